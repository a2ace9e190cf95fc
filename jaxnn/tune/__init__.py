"""Hyperparameter search decided inside the compiled program.

:func:`search` trains configurations drawn from a :mod:`~jaxnn.tune.space` side by
side in ``fit_many``'s vmapped slots, and its scheduler (:mod:`~jaxnn.tune.schedulers`)
ranks, prunes, refills or copies them inside the same compiled chunk of epochs. The
rooms, in Ray Tune's words: ``space`` (where values come from), ``schedulers`` (how the
epochs are spent), and private modules for the compiled program (``_program``), the
width buckets (``_buckets``), the call and its checks (``_search``) and what a search
leaves (``_results``). ``jaxnn.search``, ``jaxnn.space`` and the scheduler names are
re-exported at the top level.
"""

from jaxnn.tune import schedulers as schedulers
from jaxnn.tune import space as space
from jaxnn.tune._search import search as search
from jaxnn.tune.schedulers import PBT as PBT
from jaxnn.tune.schedulers import Hyperband as Hyperband
from jaxnn.tune.schedulers import SuccessiveHalving as SuccessiveHalving

__all__ = ["PBT", "Hyperband", "SuccessiveHalving", "schedulers", "search", "space"]
