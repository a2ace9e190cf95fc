"""Ten-class classification of 8x8 handwritten digits (bundled with scikit-learn):
64 features -> 64 -> 10 logits, softmax cross-entropy, trained with SGD.

    python experiments/classify_digits.py --hidden 128 --epochs 30
"""

import sys

from jaxnn import experiment

CONFIG = experiment.ExperimentConfig(
    name="classify_digits",
    dataset="digits",
    task="multiclass",
    loss="softmax_cross_entropy",
    hidden=(64,),
    metrics=("accuracy",),
    optimizer="sgd",
    learning_rate=0.05,
    batch_size=32,
    epochs=50,
)

if __name__ == "__main__":
    experiment.main(sys.argv[1:], CONFIG, __doc__)
