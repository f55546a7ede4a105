"""Keras layers of the model library; each registered for SavedModel round trips."""

from models.layers.aitm_tower import AITMTower
from models.layers.calibration import LogitShift
from models.layers.feature_embeddings import FeatureEmbeddings
from models.layers.fm import FM
from models.layers.masknet import MaskBlock, MaskNet
from models.layers.mlp import MLP
from models.layers.mmoe import MMoE
from models.layers.ple import PLE
from models.layers.senet import SENet

__all__ = ["AITMTower", "FeatureEmbeddings", "FM", "LogitShift", "MaskBlock", "MaskNet", "MLP",
           "MMoE", "PLE", "SENet"]
