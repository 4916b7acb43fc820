"""DeepSpeed learner: engine setup, log-probs, algorithms, weight export."""
