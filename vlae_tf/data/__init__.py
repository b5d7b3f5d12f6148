"""Datasets: the catalogue of what each name means, the readers of the published files, the split
protocols and binarization, tensorflow-datasets, labels, and the training and evaluation batches."""
