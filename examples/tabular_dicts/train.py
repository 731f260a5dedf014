"""The same training from Python, with the model, data and step function passed as objects.

    python train.py [overrides ...]
"""

import sys

import orchestrator
from house_prices.data import house_splits
from house_prices.model import PriceModel
from house_prices.steps import price_step

if __name__ == "__main__":
    result = orchestrator.run(["scaling.num_workers=2", "trainer.max_epochs=3", "optimizer.lr=0.01",
                               *sys.argv[1:]], model=PriceModel, data=house_splits, step=price_step)
    print(result.status, round(result.metrics["val/mae"], 3), result.run_dir)
