"""Real radiology data -> phase-tagged Parquet manifests (`radisim prepare-data --source ...`).

Flow: `sources.discover` turns each --source into chunks (the unit of work and of resume) ->
Ray Data runs `records.process_chunk` on every unfinished chunk (read, decode, window/normalise,
resize, PNG-encode, hash, tag) and stages its rows and rejects -> `writer.finalize` deduplicates by
content hash, splits train/eval by salted patient/study key and writes DIR/train, DIR/eval and
DIR/data_card.json -> the card is logged to MLflow.
"""
from .writer import IngestResult, run_ingest

__all__ = ["IngestResult", "run_ingest"]
