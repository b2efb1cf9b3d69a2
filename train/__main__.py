"""`python -m train key=value ...` — see train/pretrain.py and configs/config.yaml."""
from train.pretrain import main

if __name__ == "__main__":
    main()
