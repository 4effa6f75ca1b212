"""What the model is: layers, the C3AE builder, two-point labels, losses and the input contract."""
