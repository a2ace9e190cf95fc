"""Ten-class classification of the 8x8 digits with a small convolutional network in
Flax linen: two 3x3 convolutions with batch norm, 2x2 average pooling, a dense layer
with dropout, 10 logits. Trained by ``jaxnn.fit`` through the shared runner (same
split, run folder, checkpoints and command line as classify_digits.py's MLP);
``--hidden`` gives the two convolutions' channels and the dense layer's width.

    python experiments/classify_digits_cnn.py --epochs 30 --dropout 0.3
"""

import sys

import flax.linen as nn
import numpy as np

from jaxnn import experiment


class DigitsCNN(nn.Module):
    """conv(3x3) -> batch norm (optional) -> relu, twice; 2x2 average pool; dense ->
    relu -> dropout; dense."""

    channels: tuple[int, ...]
    width: int
    n_out: int
    dropout: float
    batch_norm: bool

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape((x.shape[0], 8, 8, 1))  # the 64 features are an 8x8 image
        for c in self.channels:
            x = nn.Conv(c, (3, 3))(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.relu(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2)).reshape((x.shape[0], -1))
        x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(nn.Dense(self.width)(x)))
        return nn.Dense(self.n_out)(x)


def build(config: experiment.ExperimentConfig, n_in: int, n_out: int, key):
    """The runner's model builder: ``(model, variables)``."""
    if n_in != 64 or len(config.hidden) != 3:
        raise ValueError(
            f"the CNN takes 8x8 images (64 features) and --hidden C1,C2,WIDTH, got {config.hidden}"
        )
    if config.norm not in (None, "batch"):
        raise ValueError(f"the CNN's norm is 'batch' or none, got {config.norm!r}")
    model = DigitsCNN(
        config.hidden[:2], config.hidden[2], n_out, config.dropout, config.norm == "batch"
    )
    return model, model.init(key, np.zeros((1, n_in), np.float32), train=False)


CONFIG = experiment.ExperimentConfig(
    name="classify_digits_cnn",
    dataset="digits",
    task="multiclass",
    loss="softmax_cross_entropy",
    hidden=(16, 32, 64),
    metrics=("accuracy",),
    optimizer="adam",
    learning_rate=0.003,
    batch_size=32,
    epochs=30,
    dropout=0.3,
    norm="batch",
)


def main(argv=None):
    return experiment.main(argv, CONFIG, __doc__, build=build)


if __name__ == "__main__":
    main(sys.argv[1:])
