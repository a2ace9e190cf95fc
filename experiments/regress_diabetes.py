"""Regression of disease progression on the diabetes dataset (bundled with
scikit-learn): 10 features -> 16 -> 1, RMSE, SGD. Features and target are
standardised with the training split's statistics, so RMSE is in standard
deviations of the target.

    python experiments/regress_diabetes.py --learning-rate 0.01
"""

import sys

from jaxnn import experiment

CONFIG = experiment.ExperimentConfig(
    name="regress_diabetes",
    dataset="diabetes",
    task="regression",
    loss="rmse",
    hidden=(16,),
    metrics=("r2",),
    optimizer="sgd",
    learning_rate=0.01,
    batch_size=16,
    epochs=100,
)

if __name__ == "__main__":
    experiment.main(sys.argv[1:], CONFIG, __doc__)
