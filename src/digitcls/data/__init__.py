"""Data: IDX files -> image folders (prepare), folders -> labelled samples (folders), files -> tensors
(images), normalisation and augmentation (transforms), and the LightningDataModule (datamodule).

Nothing is imported here, so ``python -m digitcls.data.prepare`` starts without loading Lightning.
"""
