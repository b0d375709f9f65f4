"""Communication as part of a step: sign vectors packed 1 bit per element (``sign_comm``)
and the optimizers whose workers vote with them (``sign_vote``; the catalogue's
DistributedLion and SignumMV). Everything runs on torch.distributed collectives."""
from .sign_comm import (AGGREGATIONS, NonFiniteSignsError, SignExchangeError, aggregate,
                        exchange_signs, pack_signs, packed_size, unpack_bits, unpack_signs)

__all__ = ["AGGREGATIONS", "NonFiniteSignsError", "SignExchangeError", "aggregate",
           "exchange_signs", "pack_signs", "packed_size", "unpack_bits", "unpack_signs"]
