"""The runner behind the scripts in ``experiments/``: a typed config, one training
run, and a run folder that is enough to read, compare, reproduce and resume it.

A run folder holds ``config.json``, ``run.json``, ``metrics.csv`` (one row per epoch),
``summary.json``, ``environment.json``, ``loss.png``, ``confusion.png`` for
classification, ``checkpoints/``, and ``tensorboard/`` (event files, when the
tensorboard package is installed: the ``examples`` extra installs it). ``main(argv, defaults)`` is the command line
every experiment script shares. The scripts hold only their default config.
"""

from jaxnn.experiment._cli import config_from_args as config_from_args
from jaxnn.experiment._cli import exits as exits
from jaxnn.experiment._cli import main as main
from jaxnn.experiment._cli import parser as parser
from jaxnn.experiment._config import KEPT_ON_RESUME as KEPT_ON_RESUME
from jaxnn.experiment._config import MAX_SEED as MAX_SEED
from jaxnn.experiment._config import TAKEN_ON_RESUME as TAKEN_ON_RESUME
from jaxnn.experiment._config import ExperimentConfig as ExperimentConfig
from jaxnn.experiment._config import Split as Split
from jaxnn.experiment._config import load_split as load_split
from jaxnn.experiment._run import RunFolderError as RunFolderError
from jaxnn.experiment._run import RunResult as RunResult
from jaxnn.experiment._run import confusion_figure as confusion_figure
from jaxnn.experiment._run import run as run
