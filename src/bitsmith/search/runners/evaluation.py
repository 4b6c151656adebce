"""``basic_evaluation``: loss and accuracy of the candidate on the validation split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bitsmith.schema import Table
from bitsmith.search.runners.base import Context, Runner, register_runner
from bitsmith.train import EVAL_BATCH


class EvaluationSettings(Table):
    data_loader: str = "val_dataloader"
    num_samples: int | None = Field(None, ge=1)  # the first rows; absent: the whole split
    batch_size: int = Field(EVAL_BATCH, ge=1)
    # "macro": accuracy averaged over classes, as MASE reports it (MulticlassAccuracy);
    # "micro" (default): the plain fraction of rows classified correctly.
    average: Literal["micro", "macro"] = "micro"

    @field_validator("data_loader")
    @classmethod
    def _held_out(cls, split: str) -> str:
        if split == "train_dataloader":
            raise ValueError("\"val_dataloader\": candidates must be scored on data they were not trained on")
        if split == "test_dataloader":
            raise ValueError("\"val_dataloader\": scoring on the test split chooses designs on it, and the test "
                             "figures reported afterwards would no longer be held out")
        if split != "val_dataloader":
            raise ValueError("\"val_dataloader\"")
        return split


@register_runner
class BasicEvaluation(Runner):
    name = "basic_evaluation"
    kind = "software"
    Settings = EvaluationSettings
    metrics = frozenset({"loss", "accuracy"})
    stage = 20

    def rows(self, split_rows: int) -> int | None:
        """The rows its accuracy is a fraction of, on a split of ``split_rows``: for a 95% interval. None for a
        macro average, which is a mean of per-class fractions, not one count."""
        s = self.settings
        return None if s.average == "macro" else min(s.num_samples or split_rows, split_rows)

    def __call__(self, graph, ctx: Context):
        from bitsmith.train import evaluate

        s = self.settings
        return graph, evaluate(graph.gm, ctx.data.val, ctx.device, s.batch_size, s.num_samples, average=s.average)
