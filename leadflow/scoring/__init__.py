"""Lead scoring computed by leadflow: the model's SQL, the rescoring pass, explanations."""
