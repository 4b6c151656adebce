"""Search a design space of a trained model with Optuna: ``bitsmith search`` and ``bitsmith report``."""

from bitsmith.search.report import write_report
from bitsmith.search.run import run_search
from bitsmith.search.storage import StorageOptions

__all__ = ["StorageOptions", "run_search", "write_report"]
