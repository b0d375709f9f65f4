"""Sign vectors packed 1 bit per element in torch (optforge/kernels/sign_bits_torch.py: the
torch backend's packer, the layout every backend's generated kernels write, documented in
compiler/packed_signs.py) and the errors of a step's collectives, for users of
torch.distributed. The optimizers whose workers vote with them (DistributedLion,
SignumMV) are plain DSL rules in the catalogue (catalogue/distributed_sign.py)."""
from ..runtime.collective_stage import CollectiveError, NonFiniteCollectiveError
from ..kernels.sign_bits_torch import (AGGREGATIONS, aggregate, pack_signs, packed_size, unpack_bits,
                                 unpack_signs, vote_totals)
from ..runtime.step_verdict import StepRefusedError

__all__ = ["AGGREGATIONS", "CollectiveError", "NonFiniteCollectiveError", "StepRefusedError",
           "aggregate", "pack_signs", "packed_size", "unpack_bits", "unpack_signs",
           "vote_totals"]
