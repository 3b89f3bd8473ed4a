"""Training one configuration: the data (built-in TREC or your files), batching, pretrained
vectors, the RNN classifier (with its fast CPU RNN), the training loop, checkpoints, and the
trained model applied to new text (``Classifier``)."""

from hpsearch.training._checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_config,
    save_checkpoint,
)
from hpsearch.training._data import SHA256 as TREC_SHA256
from hpsearch.training._data import ensure_data
from hpsearch.training._datasets import (
    TREC_COARSE,
    Dataset,
    check_data,
    load_dataset,
    read_texts,
    tokenize,
)
from hpsearch.training._embeddings import build_embedding_matrix, vectors_dim
from hpsearch.training._inference import Classifier, Prediction
from hpsearch.training._model import RNNClassifier, count_parameters
from hpsearch.training._readers import Fields, lines, parse_examples
from hpsearch.training._train import (
    EpochStats,
    TrainingDiverged,
    TrainResult,
    resolve_device,
    save_best,
    train,
    train_from_config,
)

__all__ = [
    "TREC_COARSE",
    "TREC_SHA256",
    "Checkpoint",
    "Classifier",
    "Dataset",
    "EpochStats",
    "Fields",
    "Prediction",
    "RNNClassifier",
    "TrainResult",
    "TrainingDiverged",
    "build_embedding_matrix",
    "check_data",
    "count_parameters",
    "ensure_data",
    "lines",
    "load_checkpoint",
    "load_config",
    "load_dataset",
    "parse_examples",
    "read_texts",
    "resolve_device",
    "save_best",
    "save_checkpoint",
    "tokenize",
    "train",
    "train_from_config",
    "vectors_dim",
]
