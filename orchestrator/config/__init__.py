"""Typed configuration: the run's sections (``run.py``), the search (``search.py``), the whole
config and its cross-section checks (``root.py``), Hydra registration and freezing (``store.py``).
The built-in components' schemas live beside their components and are re-exported here."""

from orchestrator.config.errors import MISSING, ConfigError, require, require_choice  # noqa: F401  (first)
from orchestrator.components.losses import (AutoLossConfig, BCEConfig, CrossEntropyConfig,  # noqa: F401
                                            LossConfig, MSEConfig)
from orchestrator.components.models import CNNConfig, GPTConfig, MLPConfig, ModelConfig  # noqa: F401
from orchestrator.components.optimizers import (AdamConfig, AdamWConfig, OptimizerConfig,  # noqa: F401
                                                RMSPropConfig, SGDConfig)
from orchestrator.components.schedulers import (ConstantSchedulerConfig, CosineSchedulerConfig,  # noqa: F401
                                                SchedulerConfig, StepSchedulerConfig)
from orchestrator.data.builtin import (DataConfig, DigitsConfig, MNISTConfig,  # noqa: F401
                                       SyntheticClassificationConfig, SyntheticRegressionConfig, TextConfig)
from orchestrator.data.file_schemas import ImageFolderConfig, ParquetConfig, WebDatasetConfig  # noqa: F401
from orchestrator.config.run import (ChaosConfig, CheckpointConfig, ClusterConfig, EarlyStoppingConfig,  # noqa: F401
                                     HealthConfig, OverfittingConfig, StoppingConfig, TrainerConfig)
from orchestrator.config.scaling import FailureConfig, FaultToleranceConfig, ScalingConfig  # noqa: F401
from orchestrator.config.search import ParamConfig, SearchConfig, check_param  # noqa: F401
from orchestrator.config.root import (Config, batch_size, check_combination, global_batch_size,  # noqa: F401
                                      loss_kind, task_of, validate)
