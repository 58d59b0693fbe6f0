"""Model, data and training (needs torch): PeepholeLSTM, its kernels, tasks, checkpoints."""
