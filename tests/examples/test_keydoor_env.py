"""The key-door-goal gridworlds: layouts, transitions, rewards, and that each task is solvable
(a scripted planner solves every layout) yet harder than the one before for a random policy."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from examples.keydoor import env

MOVES = [tuple(m) for m in env.MOVES]


def test_layouts_hold_one_of_each_thing_per_pair():
    for task, pairs in env.TASKS.items():
        b = env.reset(task, 64, np.random.default_rng(0), 100)
        h, w = env.shape(task)
        assert b.grid.shape == (64, h, w) and env.observe(b).shape == (64, env.obs_dim(task))
        for j in range(64):
            g = b.grid[j]
            assert (g == env.KEY).sum() == pairs and (g == env.DOOR).sum() == pairs and (g == env.GOAL).sum() == 1
            y, x = b.pos[j]
            assert g[y, x] == env.EMPTY and 1 <= x <= env.ROOM          # starts in room 0, not on the key
            assert np.argwhere(g == env.GOAL)[0][1] > w - 2 - env.ROOM  # the goal is in the last room
        # Layouts differ from episode to episode.
        assert len({b.grid[j].tobytes() for j in range(64)}) > 32


def _batch_with_agent_at(task: str, y: int, x: int) -> env.Batch:
    b = env.reset(task, 1, np.random.default_rng(3), 10)
    b.grid[0][b.grid[0] == env.KEY] = env.EMPTY
    b.grid[0][b.grid[0] == env.GOAL] = env.EMPTY
    b.pos[0] = (y, x)
    return b


def test_walls_keys_doors_and_the_goal():
    b = _batch_with_agent_at("single", 1, 1)
    door_y = int(np.argwhere(b.grid[0] == env.DOOR)[0][0])
    wall_x = 1 + env.ROOM
    assert env.step(b, np.array([0]))[0] == 0 and tuple(b.pos[0]) == (1, 1)      # up: the border wall
    b.pos[0] = (door_y, wall_x - 1)
    b.grid[0, door_y, wall_x - 2] = env.KEY
    env.step(b, np.array([3]))                                                   # right: a door, no key
    assert tuple(b.pos[0]) == (door_y, wall_x - 1) and b.grid[0, door_y, wall_x] == env.DOOR
    env.step(b, np.array([2]))                                                   # left: pick the key up
    assert b.held[0] == 1 and b.grid[0, door_y, wall_x - 2] == env.EMPTY
    env.step(b, np.array([3]))
    env.step(b, np.array([3]))                                                   # the door opens, key used
    assert tuple(b.pos[0]) == (door_y, wall_x) and b.held[0] == 0 and b.doors_opened[0] == 1
    assert b.grid[0, door_y, wall_x] == env.EMPTY
    b.grid[0, door_y, wall_x + 1] = env.GOAL
    r = env.step(b, np.array([3]))
    assert b.done[0] and b.t[0] == 6 and r[0] == pytest.approx(1 - 0.9 * 6 / 10)
    before = (b.pos.copy(), b.t.copy())
    assert env.step(b, np.array([2]))[0] == 0 and (b.pos == before[0]).all() and (b.t == before[1]).all()


def test_time_limit_ends_the_episode_without_reward():
    b = _batch_with_agent_at("double", 1, 1)
    total = 0.0
    for _ in range(10):
        assert not b.done[0]
        total += env.step(b, np.array([0]))[0]
    assert b.done[0] and total == 0 and b.t[0] == 10


def _plan(b: env.Batch, j: int) -> int:
    """The first move of a shortest path to the next thing to get: a key if none is held, else a
    door, and the goal once every door is open."""
    g = b.grid[j]
    if b.held[j]:
        target = env.DOOR
    elif (g == env.KEY).any() and (g == env.DOOR).any():
        target = env.KEY
    else:
        target = env.GOAL
    start = tuple(b.pos[j])
    first = {start: None}
    queue = deque([start])
    while queue:
        y, x = queue.popleft()
        if g[y, x] == target:
            while first[(y, x)] is not None and first[(y, x)][0] != start:
                y, x = first[(y, x)][0]
            return first[(y, x)][1]
        for a, (dy, dx) in enumerate(MOVES):
            nxt = (y + dy, x + dx)
            if nxt not in first and (g[nxt] in (env.EMPTY, env.KEY, env.GOAL) or g[nxt] == target):
                first[nxt] = ((y, x), a)
                queue.append(nxt)
    raise AssertionError(f"nothing reachable for episode {j}")


@pytest.mark.parametrize("task", list(env.TASKS))
def test_a_planner_solves_every_layout_through_every_door(task):
    pairs = env.TASKS[task]
    b = env.reset(task, 32, np.random.default_rng(1), 100)
    total = np.zeros(32)
    while not b.done.all():
        total += env.step(b, np.array([_plan(b, j) if not b.done[j] else 0 for j in range(32)]))
    assert (total > 0).all() and (b.doors_opened == pairs).all() and (b.held == 0).all()
    assert (b.t < 100).all() and np.allclose(total, 1 - 0.9 * b.t / 100)


def test_random_policy_finds_harder_tasks_harder():
    rates = {task: env.random_policy(task, 2000, np.random.default_rng(0), 100)[1].mean() for task in env.TASKS}
    assert rates["single"] > 0.1 and rates["single"] > 4 * rates["double"] and rates["double"] > rates["triple"]


def test_observation_planes():
    b = env.reset("single", 4, np.random.default_rng(2), 50)
    obs = env.observe(b)
    h, w = env.shape("single")
    planes = obs[:, :-1].reshape(4, len(env.PLANES) + 1, h, w)
    assert (planes[:, -1].reshape(4, -1).sum(1) == 1).all() and (obs[:, -1] == 0).all()
    for c, code in enumerate(env.PLANES):
        assert (planes[:, c] == (b.grid == code)).all()
