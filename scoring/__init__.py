"""Batch scoring: a pushed SavedModel over a whole candidate set of CSV files, in Beam
(`aitm score`).

  model_contract   which version a --model path means, and what its signatures take
                   and return (read from saved_model.pb, without loading the model)
  candidate_rows   the CSV files cut into byte ranges, each range's rows parsed into
                   batches of signature inputs, a bad row refused naming file and line
  model_handler    Beam RunInference's ModelHandler: the SavedModel's own signatures,
                   called in process on each batch
  score_files      the scores beside each row's key columns, one CSV or Parquet part per
                   range, in input order, into a staging directory renamed when all is done
  batch_scoring    the Beam pipeline that joins them, with progress and counters

Its own package, above components/ and serving/: it reads files as the CSV ExampleGen
does (components/byte_ranges.py, csv_parser's row rules) and rows as the serving
client types them (serving/request_rows.py), and neither may import the other.
"""
