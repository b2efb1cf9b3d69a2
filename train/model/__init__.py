"""HRM-ACT model: config, recurrent core with ACT, gating, feudal subgoals, losses, sparse embeddings."""
from train.model.build import build_model
from train.model.config import HRMConfig, SubgoalHeadConfig
from train.model.hrm import ACTCarry, HRMACT, HRMInner, InnerCarry
from train.model.losses import (ACTLossHead, IGNORE_LABEL_ID, softmax_cross_entropy,
                                stablemax_cross_entropy)
from train.model.sparse_embedding import CastedSparseEmbedding, CastedSparseEmbeddingSignSGD

__all__ = ["ACTCarry", "ACTLossHead", "CastedSparseEmbedding", "CastedSparseEmbeddingSignSGD", "HRMACT",
           "HRMConfig", "HRMInner", "IGNORE_LABEL_ID", "InnerCarry", "SubgoalHeadConfig", "build_model",
           "softmax_cross_entropy", "stablemax_cross_entropy"]
