"""jaxnn: neural networks from pure functions, trained fast with JAX."""

from jaxnn import activations as activations
from jaxnn import cache as cache
from jaxnn import checkpoint as checkpoint
from jaxnn import distributed as distributed
from jaxnn import initializers as initializers
from jaxnn import logs as logs
from jaxnn import losses as losses
from jaxnn import metrics as metrics
from jaxnn import optim as optim
from jaxnn import precision as precision
from jaxnn import rng as rng
from jaxnn import tune as tune
from jaxnn.baselines import linear_regression as linear_regression
from jaxnn.data import Dataset as Dataset
from jaxnn.data import Standardizer as Standardizer
from jaxnn.data import load_dataset as load_dataset
from jaxnn.data import make_regression as make_regression
from jaxnn.data import one_hot as one_hot
from jaxnn.data import standardize as standardize
from jaxnn.data import train_test_split as train_test_split
from jaxnn.data import validate as validate
from jaxnn.doctor import doctor as doctor
from jaxnn.explain import backprop as backprop
from jaxnn.explain import explain as explain
from jaxnn.mlp import Model as Model
from jaxnn.mlp import count_params as count_params
from jaxnn.mlp import mlp as mlp
from jaxnn.options import Checkpoints as Checkpoints
from jaxnn.options import EarlyStopping as EarlyStopping
from jaxnn.options import FitResult as FitResult
from jaxnn.options import ManyResult as ManyResult
from jaxnn.options import SearchResult as SearchResult
from jaxnn.options import Stop as Stop
from jaxnn.options import TrainState as TrainState
from jaxnn.options import TrialStatus as TrialStatus
from jaxnn.options import Tuning as Tuning
from jaxnn.settings import Settings as Settings
from jaxnn.sweep import best_params as best_params
from jaxnn.sweep import fit_many as fit_many
from jaxnn.sweep import predict_ensemble as predict_ensemble
from jaxnn.train import check_fit as check_fit
from jaxnn.train import evaluate as evaluate
from jaxnn.train import fit as fit
from jaxnn.train import init_state as init_state
from jaxnn.train import lower as lower
from jaxnn.train import make_train_step as make_train_step
from jaxnn.train import plot_history as plot_history
from jaxnn.train import predict as predict
from jaxnn.tune import PBT as PBT
from jaxnn.tune import Hyperband as Hyperband
from jaxnn.tune import SuccessiveHalving as SuccessiveHalving
from jaxnn.tune import search as search
from jaxnn.tune import space as space

__version__ = "0.1.0"

cache.configure_from_environment()  # JAX's persistent compilation cache (see jaxnn.cache)

__all__ = [
    "PBT",
    "Checkpoints",
    "Dataset",
    "EarlyStopping",
    "FitResult",
    "Hyperband",
    "ManyResult",
    "Model",
    "SearchResult",
    "Settings",
    "Standardizer",
    "Stop",
    "SuccessiveHalving",
    "TrainState",
    "TrialStatus",
    "Tuning",
    "activations",
    "backprop",
    "best_params",
    "cache",
    "check_fit",
    "count_params",
    "doctor",
    "evaluate",
    "explain",
    "fit",
    "fit_many",
    "init_state",
    "initializers",
    "linear_regression",
    "load_dataset",
    "losses",
    "lower",
    "make_regression",
    "make_train_step",
    "metrics",
    "mlp",
    "one_hot",
    "optim",
    "plot_history",
    "precision",
    "predict",
    "predict_ensemble",
    "rng",
    "search",
    "space",
    "standardize",
    "train_test_split",
    "tune",
    "validate",
]
