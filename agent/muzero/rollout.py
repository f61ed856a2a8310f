"""Rollout search over the exact mallocGame: each decision is chosen by the exact returns of completions.

At each decision (the game's order: by start of live interval), the search scores a set of
actions for the current candidate (the actions it considers: "slow", the slots the
network's policy ranks highest, the slots of a few placement rules: best fit, first fit,
last fit and the completion rules' own choices, and the action of the best episode the
previous decision scored). An action's value is the exact
return of the episode that takes it and then completes every undecided candidate with a
base rule (`complete`, a leaf evaluator): the undecided candidates in XLA's
memory-boundedness order, each best-fit (or, a second rule, first-fit) into the plane if
it fits; an action's value is the better of the two. Every value is the
cost model's `total_time` of a complete mapping of the game, so the search compares
real outcomes, not estimates. The action with the lowest completed time is played;
ties go to the first action in the order of preference (see `RolloutConfig`).

`fortified=True` is Bertsekas's fortified rollout: the search also keeps the best
complete episode it has scored so far and, where no action scores better, plays that
episode's action. The mapping is then never slower than the completion of the empty
state, which is xla-msa's mapping; without it, each decision uses the values scored at
that decision alone.

The plane is held in NumPy ([schedule steps + 1, slots] booleans) and the mappings are
scored in one jitted, vmapped call of the cost model per decision.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Optional

import jax
import numpy as np

from agent.game import rules as G
from harness.model.costmodel import bucket, total_time

SLOW = -1  # slot of a slow candidate in the arrays of this module


@dataclasses.dataclass(frozen=True)
class Board:
    """The static arrays of one game that the rollout reads (NumPy).

    The plane is not held as steps x slots: what a placement needs is the slots taken over its live range,
    the union of the rectangles of the fast candidates whose live ranges meet it. So episodes are held as
    their candidates' rectangles, packed 64 slots to a word (`rectangles`: [C, episodes, words] uint64, zero
    for a slow or undecided candidate), and the slots taken over a candidate's live range are an OR over
    the few candidates it meets (`overlaps`), not over schedule steps."""

    start: np.ndarray  # [C] first step of each candidate
    end: np.ndarray  # [C] last step
    size: np.ndarray  # [C] size in slots
    order: np.ndarray  # [C] candidate decided at each step (the game's order)
    base_order: np.ndarray  # [C] the completion rule's order (memory boundedness, then XLA's ties)
    n_steps: int  # schedule steps
    n_slots: int
    overlaps: tuple  # [C] index arrays: the candidates whose live ranges meet each one's (itself included)
    covers: dict  # size in slots -> [n_slots + 1, words] uint64: the words of a rectangle at each slot; row -1 (SLOW) empty

    @classmethod
    def of(cls, game: G.Game, base_order: np.ndarray) -> Board:
        """The board of an unpadded `game`, completed in `base_order`."""
        c = game.candidates
        start, end, size = np.asarray(c.start), np.asarray(c.end), np.asarray(game.spec.slots)
        meet = (start[:, None] <= end[None, :]) & (start[None, :] <= end[:, None])
        cols = np.arange(game.n_slots)
        covers = {}
        for w in np.unique(size):
            bits = np.zeros((game.n_slots + 1, game.n_slots), bool)
            bits[:-1] = (cols >= cols[:, None]) & (cols < cols[:, None] + w)
            covers[int(w)] = _pack(bits)
        return cls(start, end, size, np.asarray(game.spec.order), np.asarray(base_order), int(game.spec.n_steps),
                   game.n_slots, tuple(np.flatnonzero(row) for row in meet), covers)

    @property
    def n_words(self) -> int:
        """Words of a packed row of slots."""
        return -(-self.n_slots // 64)

    def rectangles(self, slots: np.ndarray) -> np.ndarray:
        """[C, L, words] the packed rectangle of every candidate in each of L episodes ([L, C] `slots`; zero
        where slow)."""
        out = np.zeros((len(self.order), len(slots), self.n_words), np.uint64)
        for w, table in self.covers.items():
            of_size = self.size == w
            out[of_size] = table[slots[:, of_size].T]
        return out

    def taken(self, rects: np.ndarray, c: int) -> np.ndarray:
        """[L, slots] bool: the slots taken over candidate `c`'s live range in each episode of `rects`
        ([C, L, words], `rectangles`)."""
        return _unpack(np.bitwise_or.reduce(rects[self.overlaps[c]], axis=0), self.n_slots)


def free_runs(taken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of free slots of a [slots] bool row."""
    d = np.diff(np.concatenate(([0], (~taken).view(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    return starts, np.flatnonzero(d == -1) - starts


def best_fit(taken: np.ndarray, width: int) -> int:
    """Start of the smallest free run that holds `width` slots (the first of equals); SLOW if none does."""
    starts, lengths = free_runs(taken)
    ok = np.flatnonzero(lengths >= width)
    return int(starts[ok[np.argmin(lengths[ok])]]) if len(ok) else SLOW


FITS = ("best fit", "first fit")  # the completion rules: each places the undecided candidates with one fit


def legal_slots(taken: np.ndarray, width: int) -> np.ndarray:
    """Every slot where a rectangle of `width` slots fits the free slots of `taken`."""
    starts, lengths = free_runs(taken)
    out = [np.arange(s, s + n - width + 1) for s, n in zip(starts, lengths) if n >= width]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def place(board: Board, rects: np.ndarray, slots: np.ndarray, c: int, slot) -> None:
    """Record candidate `c` at `slot` (or slow) in `slots` ([..., C]) and its rectangle in `rects` ([C, ..., words],
    `Board.rectangles`), in place; `slot` is one slot or one per episode."""
    slots[..., c] = slot
    rects[c] = board.covers[int(board.size[c])][slot]


def _fits(taken: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of [L, slots] `taken`: the best-fit slot (as `best_fit`) and the first-fit slot (the start of
    the lowest free run that holds it) of `width` slots (any value where none fits), and whether one fits.

    Every free slot gets the length of the free run it lies in: the first slot with the least length that
    holds `width` starts the smallest such run (the first of equals), the best fit."""
    S = taken.shape[-1]
    idx = np.arange(S)
    last_taken = np.maximum.accumulate(np.where(taken, idx, -1), axis=1)
    next_taken = np.minimum.accumulate(np.where(taken, idx, S)[:, ::-1], axis=1)[:, ::-1]
    run = next_taken - last_taken  # the free run's length + 1 through each free slot, 0 on a taken one
    ok = run > width
    fitting = np.where(ok, run, S + 2)
    best = fitting.argmin(axis=1)
    return best, ok.argmax(axis=1), fitting[np.arange(len(run)), best] < S + 2


def complete(board: Board, rects: np.ndarray, slots: np.ndarray, decided: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """[L, C] slots of L episodes: episode l keeps the `decided` candidates as placed in `slots[l]` ([L, C]) and
    `rects[:, l]` ([C, L, words], `Board.rectangles`) and places the others in `board.base_order`, each where its
    fit (`fit[l]`: 0 best fit, 1 first fit) puts it over its live range, slow where it does not fit.
    With best fit and nothing decided this is xla-msa's mapping."""
    rects, slots = rects.copy(), slots.copy()
    first = np.asarray(fit, bool)
    for c in board.base_order:
        if not decided[c]:
            best, first_fit, found = _fits(board.taken(rects, c), int(board.size[c]))
            place(board, rects, slots, c, np.where(found, np.where(first, first_fit, best), SLOW))
    return slots


def _pack(bits: np.ndarray) -> np.ndarray:
    """[..., slots] bools as [..., ceil(slots / 64)] uint64 words (slot j: bit j % 64 of word j // 64)."""
    packed = np.packbits(bits, axis=-1, bitorder="little")
    pad = -packed.shape[-1] % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((*packed.shape[:-1], pad), np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)


def _unpack(words: np.ndarray, n_slots: int) -> np.ndarray:
    """The [..., n_slots] bools of `_pack`'s words."""
    return np.unpackbits(words.view(np.uint8), axis=-1, count=n_slots, bitorder="little").view(bool)


@functools.partial(jax.jit, static_argnames="offload")
def _times(tables, masks: jax.Array, offload: bool) -> jax.Array:
    return jax.vmap(lambda m: total_time(tables, m, offload))(masks)


def times(game: G.Game, slot_rows: np.ndarray, at_least: int = 0) -> np.ndarray:
    """Simulated seconds (the cost model's `total_time`) of each row of [N, C] slots (rows with the same
    fast candidates are scored once, in a batch padded to `bucket(max(distinct rows, at_least))`: one
    compiled program serves every call with at most `at_least` distinct rows)."""
    fast = slot_rows != SLOW
    first: dict[bytes, int] = {}  # a fast set -> its number, by first appearance (np.unique over rows is slow)
    index = np.array([first.setdefault(row.tobytes(), len(first)) for row in np.packbits(fast, axis=1)])
    masks = fast[np.unique(index, return_index=True)[1]]  # row k: the first row of fast set k
    n = len(masks)
    padded = np.concatenate([masks, np.repeat(masks[-1:], bucket(max(n, at_least)) - n, axis=0)])
    scored = np.asarray(_times(game.spec.tables, padded.astype(np.float32), game.offload))
    return scored[index]


Prior = Callable[[Optional[int]], np.ndarray]  # (action just played, None at first) -> [n_slots + 1] logits


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """What the search scores at each decision.

    `simulations` is the most actions scored per decision: the rules' actions first (the
    previous decision's best episode's action, the completion rules' actions, best fit,
    first fit, last fit, slow), then the slots the network ranks highest. Each action is
    completed by every rule of `FITS`, so it costs `len(FITS)` leaves.
    """

    simulations: int = 8
    fortified: bool = False  # keep the best episode scored so far (see the module docstring)

    def __post_init__(self):
        if self.simulations < 1:
            raise ValueError(f"simulations: must be at least 1, got {self.simulations}")


def play(game: G.Game, board: Board, config: RolloutConfig, prior: Optional[Prior] = None,
         deadline: Optional[float] = None) -> tuple[np.ndarray, dict]:
    """The slots of every candidate after one searched episode of `game` (SLOW for slow), and counts of what
    the search did: leaves scored, decisions searched, and decisions where the fortified search kept its best
    episode's action.

    Anytime: with a `deadline` (a `time.perf_counter()` value), the search stops before a decision that the
    last one's duration says would end past it (the first is always searched; the decisions shorten as fewer
    candidates are left to complete) and returns the best episode scored at the last decision (the best so far
    where fortified): every decision played so far, the undecided candidates where that episode's completion
    put them."""
    C = len(board.order)
    rects = np.zeros((C, board.n_words), np.uint64)  # the rectangles of the decisions played (`Board`)
    slots = np.full(C, SLOW, np.int64)
    decided = np.zeros(C, bool)
    incumbent, incumbent_time = None, np.inf  # the best episode scored at the last decision (or so far)
    stats = {"leaves": 0, "kept_incumbent": 0, "decisions_searched": C}
    choice, here = None, None  # here: [fits, C] the completions of the current state, where known
    n_fits = len(FITS)
    began = time.perf_counter()  # the start of the current decision
    for k in range(C):
        now = time.perf_counter()
        if deadline is not None and k > 0 and now + (now - began) >= deadline:
            stats["decisions_searched"] = k
            return incumbent.copy(), stats  # it holds every decision played: each was its action
        began = now
        c = int(board.order[k])
        busy = board.taken(rects[:, None], c)[0]
        legal = legal_slots(busy, int(board.size[c]))
        logits = prior(choice) if prior is not None else None
        if here is None:
            here = complete(board, np.repeat(rects[:, None], n_fits, axis=1), np.repeat(slots[None], n_fits, axis=0),
                            decided, np.arange(n_fits))
        previous = None if incumbent is None else int(incumbent[c])
        actions = _considered(board, c, busy, legal, logits, config.simulations, previous, here[:, c])
        decided[c] = True
        leaves = len(actions) * n_fits  # action i completed by fit j: leaf i * n_fits + j
        leaf_rects, starts = np.repeat(rects[:, None], leaves, axis=1), np.repeat(slots[None], leaves, axis=0)
        place(board, leaf_rects, starts, c, np.repeat(actions, n_fits))
        rows = complete(board, leaf_rects, starts, decided, np.tile(np.arange(n_fits), len(actions)))
        t = times(game, rows, config.simulations * n_fits)  # one batch size: one compile per game
        stats["leaves"] += len(rows)
        best = int(np.argmin(t))  # the first of equals: the preference order of `_considered`
        choice = actions[best // n_fits]
        here = rows[best - best % n_fits: best - best % n_fits + n_fits]
        if config.fortified and t[best] > incumbent_time:
            choice, here = int(incumbent[c]), None
            stats["kept_incumbent"] += 1
        else:
            incumbent, incumbent_time = rows[best], t[best]
        place(board, rects, slots, c, choice)
    return slots, stats


def _considered(board, c, taken, legal, logits, simulations, previous, rules) -> list[int]:
    """At most `simulations` actions to score at one decision, in order of preference among equal values: the
    action of the best episode the previous decision scored, the completion rules' (`rules`), best fit,
    first fit, last fit, slow, then the legal slots the network ranks highest."""
    actions = [] if previous is None else [previous]
    if len(legal):
        actions += [int(a) for a in rules] + [best_fit(taken, int(board.size[c])), int(legal[0]), int(legal[-1])]
    actions = list(dict.fromkeys(actions + [SLOW]))[:simulations]
    if logits is not None and len(actions) < simulations:
        ranked = legal[np.argsort(-logits[legal], kind="stable")]
        actions += [int(a) for a in ranked if a not in actions][: simulations - len(actions)]
    return actions
