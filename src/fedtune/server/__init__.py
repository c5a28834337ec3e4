"""Server side: strategies (FedAvg, FedOpt family, SCAFFOLD, baselines) and update checks."""
