"""The same training from Python: the model class and the dataset function are passed as objects.

    python train.py [overrides ...]
"""

import sys

import orchestrator
from digit_images.data import image_folder_splits
from digit_images.nets import SmallConvNet


def make_data(seed: int):
    return image_folder_splits("data/digits_png", image_size=16, seed=seed)


if __name__ == "__main__":
    result = orchestrator.run(["scaling.num_workers=2", "trainer.max_epochs=3", "data.batch_size=32", "optimizer.lr=0.01",
                               *sys.argv[1:]], model=SmallConvNet, data=make_data)
    print(result.status, round(result.metrics["val/accuracy"], 3), result.run_dir)
