"""Baselines to judge a network against: what you get without one."""

import numpy as np

from jaxnn.data import validate


def linear_regression(x_train, y_train):
    """Fits ordinary least squares ``y = x @ W + b``; returns ``predict(x)``.

    The seed's network must beat this line to be worth its hidden layers.

    Example:
      >>> predict = linear_regression(np.array([[0.0], [1.0]]), np.array([[1.0], [3.0]]))
      >>> predict(np.array([[2.0]])).round(3).tolist()
      [[5.0]]
    """
    x, y = validate(x_train, y_train)
    y2 = y.reshape(len(y), -1).astype(np.float64)
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design, y2, rcond=None)

    def predict(x_new):
        xn, _ = validate(x_new)
        if xn.shape[1] != x.shape[1]:
            raise ValueError(
                f"x has {xn.shape[1]} features, the baseline was fitted on {x.shape[1]}"
            )
        out = (np.hstack([xn.astype(np.float64), np.ones((len(xn), 1))]) @ coef).astype(np.float32)
        return out if y.ndim == 2 else out[:, 0]

    return predict
