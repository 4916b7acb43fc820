"""The training loop: the controller, the experience it collects, the prompt stream and the win-rate."""
