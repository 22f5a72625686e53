"""Two networks side by side, layer by layer (the lecture's ZFNet-versus-AlexNet slide, exactly).

Layers are aligned by name with a longest-matching-blocks diff, so networks of different depths line
up where they agree (VGG16's conv3_3 beside VGG19's conv3_3, VGG19's conv3_4 alone). Where the names
differ, layers of the same type are paired in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .analyzer import LayerStats, Report

FIELDS = ("config", "input", "output", "params", "macs")


@dataclass
class Pair:
    """One aligned row: a layer of A, of B, or both; `differs` names the fields that differ."""

    a: LayerStats | None
    b: LayerStats | None
    differs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.a and self.b and self.a.name != self.b.name:
            return f"{self.a.name} / {self.b.name}"
        return (self.a or self.b).name  # type: ignore[union-attr]

    def difference(self, key: str) -> int:
        """A's `key` ("params", "weights", "macs"...) minus B's; a missing side counts 0."""
        return (getattr(self.a, key) if self.a else 0) - (getattr(self.b, key) if self.b else 0)


@dataclass
class Comparison:
    a: Report
    b: Report
    pairs: list[Pair]

    def totals(self) -> dict[str, dict[str, int]]:
        """Totals of A and B and their difference A - B."""
        out = {}
        for key in ("params", "weights", "biases", "macs", "weight_layers"):
            va, vb = getattr(self.a, key), getattr(self.b, key)
            out[key] = {"a": va, "b": vb, "difference": va - vb}
        return out


def _values(s: LayerStats) -> dict[str, object]:
    return {"config": s.hyper, "input": str(s.input), "output": str(s.output),
            "params": s.params, "macs": s.macs}  # fmt: skip


def _pair(a: LayerStats | None, b: LayerStats | None) -> Pair:
    if a is None or b is None:
        return Pair(a, b, list(FIELDS))
    va, vb = _values(a), _values(b)
    return Pair(a, b, [f for f in FIELDS if va[f] != vb[f]])


def align(a: list[LayerStats], b: list[LayerStats]) -> list[Pair]:
    """Pairs of layers of A and B, in order."""
    import difflib  # here: `ilsvrc summary` does not load it

    matcher = difflib.SequenceMatcher(None, [r.name for r in a], [r.name for r in b], autojunk=False)
    pairs: list[Pair] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pairs += [_pair(x, y) for x, y in zip(a[i1:i2], b[j1:j2])]
            continue
        left, right = list(a[i1:i2]), list(b[j1:j2])
        while left or right:  # pair layers of the same type in order; the rest stand alone
            if left and right and left[0].kind == right[0].kind:
                pairs.append(_pair(left.pop(0), right.pop(0)))
            elif left and (not right or left[0].kind not in {r.kind for r in right}):
                pairs.append(_pair(left.pop(0), None))
            else:
                pairs.append(_pair(None, right.pop(0)))
    return pairs


HIDDEN = ("relu", "dropout")


def compare(a: Report, b: Report, hide: tuple[str, ...] = HIDDEN) -> Comparison:
    """Align two analysed networks through their leaves; `hide` drops layer types that only pass
    their volume on (ReLU and dropout by default) so the rows are the lecture's boxes."""

    def rows(r: Report) -> list[LayerStats]:
        return [s for s in r.leaves if s.kind not in hide]

    return Comparison(a, b, align(rows(a), rows(b)))
