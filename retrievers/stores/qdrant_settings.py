"""One mapping of ragnodes' quantization and HNSW settings to a Qdrant server collection
(``qdrant_client.models``), shared by :class:`~retrievers.stores.qdrant.QdrantStore`,
:class:`~retrievers.stores.qdrant_edge.QdrantEdgeStore` (whose in-process engine takes the same
settings) and the Qdrant hybrid retriever."""

from __future__ import annotations

from typing import Any

from retrievers.kernels.quantize import check_kind

SCALAR_QUANTILE = 0.99


def client_quantization(kind: str | None) -> Any:
    """``qdrant_client.models`` quantization config for a server collection (``None``: none)."""
    if check_kind(kind) is None:
        return None
    from qdrant_client import models

    if kind == "int8":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=SCALAR_QUANTILE, always_ram=True
            )
        )
    enc = models.BinaryQuantizationEncoding
    return models.BinaryQuantization(
        binary=models.BinaryQuantizationConfig(
            always_ram=True, encoding=enc.ONE_BIT if kind == "binary" else enc.TWO_BITS
        )
    )


def client_hnsw(m: int | None, ef_construct: int) -> Any:
    """``qdrant_client.models.HnswConfigDiff`` (``m=None``: the server's default graph)."""
    if m is None:
        return None
    from qdrant_client import models

    return models.HnswConfigDiff(m=m, ef_construct=ef_construct)


def client_search_params(
    kind: str | None, rescore: bool, oversampling: float, hnsw_ef: int | None, exact: bool = False
) -> Any:
    from qdrant_client import models

    quant = None
    if kind is not None:
        quant = models.QuantizationSearchParams(rescore=rescore, oversampling=oversampling)
    return models.SearchParams(hnsw_ef=hnsw_ef, exact=exact, quantization=quant)
