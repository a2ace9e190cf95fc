"""Binary classification of the breast cancer dataset (bundled with scikit-learn):
30 features -> 16 -> 1 with a sigmoid output (a probability in (0, 1)) and binary
cross-entropy, trained with SGD.

    python experiments/classify_breast_cancer.py --epochs 50
"""

import sys

from jaxnn import experiment

CONFIG = experiment.ExperimentConfig(
    name="classify_breast_cancer",
    dataset="breast_cancer",
    task="binary",
    loss="binary_cross_entropy",
    output_activation="sigmoid",
    hidden=(16,),
    metrics=("accuracy",),
    optimizer="sgd",
    learning_rate=0.05,
    batch_size=16,
    epochs=50,
)

if __name__ == "__main__":
    experiment.main(sys.argv[1:], CONFIG, __doc__)
