"""Publishing a run folder as a Hugging Face Hub dataset (``synthllm push``).

What goes up: the dataset files (``dataset.parquet``, ``dataset.jsonl``), the
dataset card ``README.md`` (written first by :func:`synthllm.card.write_card`,
with the repository id in its loading examples) and the report
(``report.html``, ``report.json``) when the run has one; never the stages,
the cache or the manifest's paths beyond what the card states. The repository
is private unless asked otherwise. The token is read from the environment
(``HF_TOKEN`` by default) and handed to ``huggingface_hub`` for the requests
only: it is never written to a file, and ``huggingface_hub``'s own stored
login is not consulted. Every failure of the upload (no network, a 4xx/5xx
answer, offline mode) is one :class:`PushError` line, never a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import EXIT_WORK_LEFT, InputError, MissingDependency, SynthLLMError

#: the files of a run folder that are published, in this order
PUBLISHED = ("README.md", "dataset.parquet", "dataset.jsonl", "report.html", "report.json")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class PushError(SynthLLMError):
    """The Hub refused or could not be reached; nothing is lost locally, the same command retries."""

    exit_code = EXIT_WORK_LEFT


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def push(run_dir: str | Path, repo_id: str, *, private: bool = True, token_env: str = "HF_TOKEN",
         card: bool = True) -> str:
    """Upload a finished run folder to the Hub as a dataset repository.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (``dataset.parquet`` required).
    repo_id : str
        ``OWNER/NAME`` of the dataset repository; created when missing.
    private : bool, default=True
        Create the repository private (an existing one keeps its visibility).
    token_env : str, default="HF_TOKEN"
        Environment variable that holds the access token.
    card : bool, default=True
        (Re)write ``README.md`` with :func:`synthllm.card.write_card` first;
        ``False`` uploads the ``README.md`` that is there.

    Returns
    -------
    str
        The URL of the commit on the Hub.
    """
    run_dir = Path(run_dir)
    if not REPO_ID.match(repo_id):
        raise InputError.at("--repo", f"{repo_id!r} is not OWNER/NAME")
    if not (run_dir / "dataset.parquet").is_file():
        raise InputError.at(run_dir, "no dataset.parquet (is this a finished run folder?)")
    token = os.environ.get(token_env)
    if not token:
        raise InputError(f"{token_env} is not set: export an access token with write permission "
                         f"(https://huggingface.co/settings/tokens) in {token_env}")
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HTTPError
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:
        raise MissingDependency("synthllm push needs huggingface_hub: pip install 'synthllm[hub]'") from None
    if card:
        from .card import write_card

        write_card(run_dir, repo_id=repo_id)
    files = [name for name in PUBLISHED if (run_dir / name).is_file()]
    # huggingface_hub logs each retry of a failed request as a warning; the outcome is one line here.
    hub_logging.set_verbosity_error()
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=run_dir, repo_id=repo_id, repo_type="dataset", allow_patterns=files,
                                   commit_message=f"synthllm push: {', '.join(files)}")
    except (HTTPError, OSError, ValueError) as exc:  # ValueError: HFValidationError, a malformed reply
        raise PushError(f"push to {api.endpoint}/datasets/{repo_id} failed: {_short(exc)}") from None
    return str(getattr(commit, "commit_url", commit))
