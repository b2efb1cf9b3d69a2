"""A ConSpec-style agent on key-door-goal gridworlds: the program the ConSpec sweep runs.

    python -m examples.keydoor environment=single episodes=2000 learning_rate=0.001

Modules: env (the vectorised gridworlds), agent (LSTM actor-critic), ppo (rollouts, GAE, PPO),
conspec (episode memory and prototypes), trainer (state, one iteration, checkpoints), config (the
key=value arguments), cli (the program; progress.jsonl and W&B through train.metrics.RunLogger).
"""
