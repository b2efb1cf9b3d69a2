"""Key-door-goal gridworlds, a whole batch of episodes stepped at once with numpy.

A task with n key-door pairs is a row of n+1 rooms (ROOM x ROOM cells each) joined by walls,
each wall with one door at a random row. The agent starts in room 0; key i lies somewhere in
room i and opens door i (between rooms i and i+1); the goal lies in the last room:

    single  (n=1)   agent+key | door | goal
    double  (n=2)   agent+key | door | key | door | goal
    triple  (n=3)   three pairs, four rooms

Stepping onto a key picks it up; stepping into a closed door while holding a key opens it
(the key is used up) and moves the agent in; a door without a key is a wall. The only reward
is at the goal, MiniGrid-style 1 - 0.9 * t / max_steps, so faster is better and a failure is 0.
Layouts (key, door, goal and start positions) are drawn afresh every episode.

The agent sees the whole grid: one-hot planes for wall, key, door, goal and itself, and
whether it holds a key.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = {"single": 1, "double": 2, "triple": 3}
ROOM = 4                                   # interior side of a room, in cells
EMPTY, WALL, KEY, DOOR, GOAL = 0, 1, 2, 3, 4
PLANES = (WALL, KEY, DOOR, GOAL)           # one observation plane each, then the agent's
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)   # up, down, left, right
N_ACTIONS = len(MOVES)


def shape(task: str) -> tuple[int, int]:
    """(height, width) of the task's grid, border walls included."""
    pairs = TASKS[task]
    return ROOM + 2, (pairs + 1) * ROOM + pairs + 2


def obs_dim(task: str) -> int:
    h, w = shape(task)
    return (len(PLANES) + 1) * h * w + 1


def _room_x0(room: int) -> int:
    return 1 + room * (ROOM + 1)


@dataclass
class Batch:
    """The state of `n` episodes; arrays are indexed by episode first."""

    grid: np.ndarray        # (n, H, W) int8 cell codes (the agent is not in the grid)
    pos: np.ndarray         # (n, 2) int64 row, column
    held: np.ndarray        # (n,) int64 keys held
    t: np.ndarray           # (n,) int64 steps taken
    done: np.ndarray        # (n,) bool
    doors_opened: np.ndarray  # (n,) int64
    max_steps: int

    @property
    def n(self) -> int:
        return len(self.pos)


def reset(task: str, n: int, rng: np.random.Generator, max_steps: int) -> Batch:
    """`n` fresh episodes of `task` with layouts drawn from `rng`."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {sorted(TASKS)}")
    pairs = TASKS[task]
    h, w = shape(task)
    grid = np.zeros((n, h, w), dtype=np.int8)
    grid[:, 0, :] = grid[:, -1, :] = grid[:, :, 0] = grid[:, :, -1] = WALL
    rows = np.arange(n)
    cells = ROOM * ROOM
    for i in range(pairs):
        wall_x = _room_x0(i) + ROOM
        grid[:, :, wall_x] = WALL
        grid[rows, 1 + rng.integers(0, ROOM, n), wall_x] = DOOR
    # Room 0 holds the start and key 0 on two different cells.
    start = rng.integers(0, cells, n)
    key0 = rng.integers(0, cells - 1, n)
    key0 += key0 >= start
    pos = np.stack([1 + start // ROOM, _room_x0(0) + start % ROOM], axis=1).astype(np.int64)
    grid[rows, 1 + key0 // ROOM, _room_x0(0) + key0 % ROOM] = KEY
    for i in range(1, pairs):
        k = rng.integers(0, cells, n)
        grid[rows, 1 + k // ROOM, _room_x0(i) + k % ROOM] = KEY
    g = rng.integers(0, cells, n)
    grid[rows, 1 + g // ROOM, _room_x0(pairs) + g % ROOM] = GOAL
    zeros = np.zeros(n, dtype=np.int64)
    return Batch(grid=grid, pos=pos, held=zeros.copy(), t=zeros.copy(), done=np.zeros(n, dtype=bool),
                 doors_opened=zeros.copy(), max_steps=max_steps)


def step(b: Batch, actions: np.ndarray) -> np.ndarray:
    """Apply one action per episode (episodes already done stay as they are); returns rewards."""
    live = np.flatnonzero(~b.done)
    reward = np.zeros(b.n, dtype=np.float32)
    if live.size == 0:
        return reward
    target = b.pos[live] + MOVES[actions[live]]
    ty, tx = target[:, 0], target[:, 1]
    cell = b.grid[live, ty, tx]
    held = b.held[live]
    opens = (cell == DOOR) & (held > 0)
    picks = cell == KEY
    moves = ~((cell == WALL) | ((cell == DOOR) & (held == 0)))
    cleared = opens | picks
    b.grid[live[cleared], ty[cleared], tx[cleared]] = EMPTY
    b.held[live] = held + picks - opens
    b.doors_opened[live] += opens
    b.pos[live] = np.where(moves[:, None], target, b.pos[live])
    b.t[live] += 1
    reached = moves & (cell == GOAL)
    reward[live[reached]] = 1.0 - 0.9 * b.t[live[reached]] / b.max_steps
    b.done[live] = reached | (b.t[live] >= b.max_steps)
    return reward


def observe(b: Batch) -> np.ndarray:
    """(n, obs_dim) uint8: the planes of PLANES, the agent's plane, then 'holds a key'."""
    n, h, w = b.grid.shape
    planes = np.zeros((n, len(PLANES) + 1, h, w), dtype=np.uint8)
    for c, code in enumerate(PLANES):
        planes[:, c] = b.grid == code
    planes[np.arange(n), len(PLANES), b.pos[:, 0], b.pos[:, 1]] = 1
    return np.concatenate([planes.reshape(n, -1), (b.held > 0).astype(np.uint8)[:, None]], axis=1)


def random_policy(task: str, n: int, rng: np.random.Generator, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and successes of `n` episodes of uniformly random actions: the baseline to beat."""
    b = reset(task, n, rng, max_steps)
    total = np.zeros(n, dtype=np.float32)
    while not b.done.all():
        total += step(b, rng.integers(0, N_ACTIONS, n))
    return total, total > 0
