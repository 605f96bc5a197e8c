"""Changes as functions of the model: upserting every document of a metadata document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metacrm.metadata.model import DOCUMENT_KINDS, MetadataModel
from metacrm.metadata.schema import parse

#: A proposed metadata change: the current model in, the wanted model out.
Change = Callable[[MetadataModel], MetadataModel]


def merge_document(document: dict[str, Any]) -> Change:
    """A change that upserts every document of a metadata document (`{"objects": [...], "roles": [...]}`)."""
    proposed = parse(MetadataModel, document)
    kinds = ["objects", *(attribute for attribute, _cls in DOCUMENT_KINDS.values())]

    def change(model: MetadataModel) -> MetadataModel:
        for kind in kinds:
            for doc in proposed.documents(kind):
                model = model.with_document(kind, doc)
        return model

    return change
