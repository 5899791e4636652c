"""The plan's data model: what every element of every output tensor holds, and where it goes.

A Plan lists, for every output tensor, its segments: element ranges computed
by the formula ("merge": cp + alpha * (chat - base), or cp + alpha * vector),
copied from another tensor ("copy": cp's own rows, or the chat model's rows of
a special token), or, for `extract`, chat - base. Tensors are grouped into the
output's shards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..dtypes import nbytes
from ..read.checkpoint import Checkpoint
from ..read.header import TensorInfo
from .options import MergeOptions

# What happens to a tensor (the plan's policy names).
MERGE = "merge"  # every element
SHARED_ROWS = "merge-shared-rows"  # cp has an expanded vocabulary: merge the shared rows, keep cp's extra rows
ADDED_ROWS = "merge-shared-rows + chat's added tokens"  # and append chat's rows of tokens base lacks
COPY_SKIPPED = "copy (--skip)"
COPY_VOCAB_SKIPPED = "copy (--vocab-mismatch skip)"
COPY_ONLY_IN_CP = "copy (not in base/chat)"
COPY_NOT_FLOAT = "copy (not a float dtype)"
EXTRACT = "extract"  # chat - base, for a saved chat vector
SCALES = "scales of an FP8 weight"  # written from the kernel's group scales of the weight before it
COPY_ACTIVATION_SCALE = "copy (FP8 activation scale)"


@dataclass(frozen=True)
class Segment:
    """Elements [start, start + count) of an output tensor.

    kind "merge": the formula over the plan's base/chat/cp at the same elements.
    kind "copy": `source`'s elements from `source_start` (converted if its dtype differs).
    kind "extract": chat - base at the same elements.
    """

    kind: str
    start: int
    count: int
    source: TensorInfo | None = None
    source_start: int = 0

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass
class TensorPlan:
    name: str
    policy: str
    shape: tuple[int, ...]
    out_dtype: str
    cp: TensorInfo | None  # None when extracting
    base: TensorInfo | None  # None for a saved vector (apply) or a copied tensor
    chat: TensorInfo | None  # the chat model's tensor, or the saved vector
    alphas: tuple[float, ...]
    segments: list[Segment]
    # FP8 output (--dtype fp8): how the kernel re-quantizes this tensor, and the TensorPlan its scales fill
    out_scale: object = None  # plan.fp8.OutScaleSpec
    scales_of: TensorPlan | None = None  # on a SCALES tensor: the weight whose group scales it holds
    vectors: tuple = ()  # apply with several saved vectors: all of them (chat holds the first)

    @property
    def deltas(self) -> tuple:
        """The inputs of the chat-vector side: chat (merge, extract), or the saved vectors (apply)."""
        return self.vectors or ((self.chat,) if self.chat is not None else ())

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def out_nbytes(self) -> int:
        return nbytes(self.out_dtype, self.numel)

    @property
    def merged_elements(self) -> int:
        return sum(s.count for s in self.segments if s.kind == "merge")

    @property
    def read_nbytes(self) -> int:
        """Bytes this tensor reads from the inputs."""
        total = 0
        for s in self.segments:
            if s.kind == "copy":
                total += nbytes(s.source.dtype, s.count)
            elif s.kind != "scales":
                inputs = [t for t in (self.base, *self.deltas, self.cp if s.kind == "merge" else None) if t is not None]
                total += sum(nbytes(t.dtype, s.count) for t in inputs)
        return total


@dataclass
class OutputShard:
    filename: str
    tensors: list[TensorPlan]

    @property
    def data_nbytes(self) -> int:
        return sum(t.out_nbytes for t in self.tensors)


@dataclass
class Plan:
    options: MergeOptions
    inputs: dict[str, Checkpoint]  # by role: base, chat, cp, vector
    shards: list[OutputShard]
    single_file: bool  # True: write model.safetensors with no index
    dropped: list[str] = field(default_factory=list)  # in base and chat (or the vector) but not in cp
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # inputs that look wrong: said before any work
    scales: dict = field(default_factory=dict)  # input TensorInfo of an F8 weight -> its plan.fp8.ScaleSpec
    fp8: dict = field(default_factory=dict)  # each input's FP8 weights and the output's form, for the report
    special_rows: tuple = ()  # (token, chat row, cp row): rows the vocabulary tensors take from chat
    appended: tuple = ()  # AddedTokens: chat's rows appended to cp's vocabulary (--added-tokens append)

    @property
    def tensors(self) -> list[TensorPlan]:
        return [t for s in self.shards for t in s.tensors]

    def policy_counts(self) -> Counter:
        return Counter(t.policy for t in self.tensors)

    @property
    def read_nbytes(self) -> int:
        return sum(t.read_nbytes for t in self.tensors)

    @property
    def write_nbytes(self) -> int:
        """Tensor bytes written per output (headers not counted)."""
        return sum(s.data_nbytes for s in self.shards)

    def alpha_groups(self, output: int | None = None) -> dict:
        """Merged tensors by the alphas they get: all K of them, or those of one output."""
        groups: dict = {}
        for t in self.tensors:
            if t.merged_elements:
                key = t.alphas if output is None else t.alphas[output]
                groups.setdefault(key, []).append(t.name)
        return groups

    def describe(self) -> str:
        """The --dry-run report."""
        from .problems import describe_plan

        return describe_plan(self)
