"""The method: how x' is parameterized, the loss terms, the optimizer loop, references and kernel selection."""
