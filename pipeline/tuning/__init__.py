"""Hyper-parameter search with Optuna (Akiba et al., "Optuna: A Next-generation Hyperparameter
Optimization Framework", KDD 2019): search spaces from config, storages, resumable studies."""
