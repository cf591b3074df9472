"""Screening jobs: score thousands of scraped images with one model, so NGO staff review the flagged ones.

`python -m wildvision screen SOURCE...` turns folders (searched recursively), zips, list files (one
image path per line) and manifests of scraped listings (.csv or .jsonl, listings.py) into a job folder that survives being killed: `--resume SCREEN_DIR` finishes it.
The dashboard runs the same jobs in the background, and `--slurm-tasks N` as a SLURM job array of N shards.

The package, a module per responsibility (the command line is wildvision/cli/screening.py):
  config      ScreenConfig, config.json read and written in one place, with the folder's format version
  sources     what the sources hold, every file a row (zips inside folders too); the file list
  listings    manifests of scraped listings: each photo's listing URL, post id, title, date, seller, platform
  scoring     scoring the list into part files, by shard
  merge       parts into scores.csv, duplicate groups, the counts
  job         a job's life: created, listed, scored, merged, resumed
  background  jobs started, followed, cancelled and resumed in the background or on SLURM
  review      what the Review page shows: items, queue, bands, measured precision
  decisions   people's decisions, in the job's decisions.sqlite
  export      the confirmed cases as CSV and evidence pack; exports started in the background
  training_export  the decided photos as a training folder, with its manifest and test-set overlaps
  job_features  each photo's backbone features, stored while scoring, beside scores.csv
  retrain     a new head for the job's model from its decisions and stored features, as an ordinary run folder
  rescore     which scores and model are current; adopting another model re-scores the job as a new version

screens/<name>-<UTC time>-<suffix>/   (under $WILDVISION_SCREENS_DIR, else screens/)
  config.json   (config.ScreenConfig) the folder's format version, the model as given, its architecture, threshold, class names and version (checkpoint
                path and mtime, or the default model card's code_version), the sources, the number of
                files and the part size; a resume refuses a model whose version changed. A job started
                in the background records the model (and so the part size) when its process loads it,
                and the number of files once they are listed (null until then), with the number of
                system files (.DS_Store, Thumbs.db...) left out, which the log names too
  status.json   runs.write_status's contract (queued, running, completed, failed, cancelled; 'interrupted'
                derived when the process is gone) plus done, total, images_per_second and seconds_left,
                and once completed, counts (write_scores: files, distinct_photos, flagged files,
                flagged_photos, unreadable files)
  files.jsonl   the file list, fixed once: one JSON [path as given or listed, file on disk, error] a line
  listings.jsonl  (listings) for a job screened from a manifest, written with files.jsonl: one JSON object a
                line, `row` (files.jsonl's row, from 0), listing_id, listing_url (http(s) only, else ""),
                title, listing_date (ISO 8601, or as written), seller, platform, extra (other columns), notes
  unpacked/     zip members that passed uploads' checks, under numbered names (member names are never
                used as paths: a `../` member is a row with its reason, not a file outside the folder)
  parts/        part-<first index>.csv per PART_BATCHES batches, while the job runs (removed at the end), each with
                features-<first index>.npy (its rows' features) beside it, and features.json
  scores.csv    when completed: one row per listed file, in list order: path, sha256, probability,
                label (at the model's threshold), unlike_training, duplicate_group, error; after another model
                was adopted (rescore), the current version of the scores
  features.npy  (job_features) [files, dim] float16, row i the pooled head input of scores.csv's row i, NaN for a
                file with no score: what retrain and rescore need, so no photo is decoded again. 1280 x 2 bytes
                a photo for the default model: 256 MB per 100,000 photos
  features.json the architecture and a digest of the backbone that made them, and the features per photo
  scores-versions/v<N>.csv, versions.json   (rescore) earlier versions of the scores, and which model made each
                version, when, and who adopted it; config.json's model fields name the current version's model
  console.log   the output of its background process or SLURM tasks
  exports/      what the Review page exported, requests.jsonl and one log per export request
  slurm.json, slurm/   for a job submitted to SLURM: its job id and task count; each submission's folder

Exactly once: the file list is written before any scoring and never changes; part k always covers list
rows [k * part_size, (k + 1) * part_size) and is written whole by an atomic rename. A resume scores only
the parts that are missing, so a kill loses at most one part's work and never duplicates a row;
scores.csv is merged from the parts and written atomically before the status says completed. SIGTERM
(cancel, scancel, a SLURM time limit) ends the part under way unwritten and records 'cancelled'.

Shards: `--resume SCREEN_DIR --shard I/N` scores only the parts whose number modulo N is I (SLURM array
task I of N), so N processes share a job without overlapping; each merges scores.csv at its end if it
finds every part written (under a lock), so whichever finishes last completes the job. `done` counts
the rows of all parts on disk, whoever wrote them.

A reposted photo is one review item: files with identical bytes (SHA-256) or pHashes at most
photos.PHASH_THRESHOLD bits apart share `duplicate_group`, the list row number (from 1) of the
group's first file; a photo seen once is its own group. Groups are computed at the end, over all rows.

A file that cannot be used (corrupt, truncated, a decompression bomb, not an image, missing, an unsafe
zip member, a zip that cannot be opened) is a row whose `error` says why; it never stops the job.

`unlike_training` is how unlike the model's training photos an image is (wildvision.novelty, from the same
forward pass as its probability); empty when the model keeps no summary of its training photos.
"""
