"""hpsearch: hyperparameter search for RNN sentence classifiers, on Optuna."""

__version__ = "0.1.0"
