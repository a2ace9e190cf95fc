"""Three-class classification of the iris flowers (bundled with scikit-learn):
4 features -> 32 -> 3 logits, softmax cross-entropy (the softmax is inside the loss,
which keeps it exact for any logit), trained with SGD.

    python experiments/classify_iris.py --batch-size 1
"""

import sys

from jaxnn import experiment

CONFIG = experiment.ExperimentConfig(
    name="classify_iris",
    dataset="iris",
    task="multiclass",
    loss="softmax_cross_entropy",
    hidden=(32,),
    metrics=("accuracy",),
    optimizer="sgd",
    learning_rate=0.05,
    batch_size=8,
    epochs=100,
)

if __name__ == "__main__":
    experiment.main(sys.argv[1:], CONFIG, __doc__)
