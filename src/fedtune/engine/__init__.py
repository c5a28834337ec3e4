"""Engines that drive Strategy + LocalTrainer: the embedded simulation and Flower."""
