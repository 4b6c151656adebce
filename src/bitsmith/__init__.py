"""bitsmith: fit small neural networks to a hardware budget.

Heavy modules (torch, optuna) load lazily so that ``bitsmith --help`` is fast.
"""

from bitsmith.errors import BitsmithError

__version__ = "0.1.0"

__all__ = ["BitsmithError", "__version__"]
