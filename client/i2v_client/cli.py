"""``i2v``: the image-to-video API from a shell. ``i2v --help`` lists commands and exit codes.

Every failure is one line on stderr (``i2v: error: ...``) and a documented exit code, never a
traceback. Once the gateway accepted a job, no failure loses it: the line names the job and the
commands that follow it (``i2v jobs wait ID -o PATH``) or cancel it. Ctrl-C leaves the job
running (``--cancel-on-interrupt`` cancels it)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from i2v_client.admin_cli import add_admin_commands
from i2v_client.client import Client
from i2v_client.errors import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    GenerationTimeoutError,
    I2VError,
    InvalidRequestError,
    NotFound,
    RateLimitedError,
    ServiceUnavailableError,
)
from i2v_client.models import JobResponse, JobStatus
from i2v_client.terminal import ProgressBar, emit
from i2v_client.transport import DEFAULT_URL, RetryPolicy

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_ERROR = range(7)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_CODES = """exit codes:
  0  success
  1  the job failed or was cancelled (batch: an item was rejected or its job did not succeed)
  2  usage: bad arguments or settings (URL, token), an unreadable image or unwritable output,
     or the gateway refused the request (400, 409, 413, 422)
  3  authentication: token missing or wrong, or address not allowed (401, 403)
  4  not found: no such job for this token (404)
  5  busy or unavailable after retries: rate limited (429), model not ready or failed (502, 503), timed out (504)
  6  the gateway cannot be reached (after retries), waiting timed out (--wait-timeout), or another error
  130  interrupted (Ctrl-C)

Once a job is accepted, a failure or Ctrl-C leaves it running on the gateway and prints its id
with the commands to follow it (i2v jobs wait ID -o PATH) or cancel it (i2v jobs cancel ID);
--cancel-on-interrupt cancels it on Ctrl-C instead. Waits ride out gateway restarts."""
VIDEO_OPTIONS = {  # option -> request field, type
    "--resolution": ("resolution", str), "--width": ("width", int), "--height": ("height", int),
    "--frames": ("num_frames", int), "--fps": ("fps", int),
    "--steps": ("steps", int), "--guidance-scale": ("guidance_scale", float),
    "--negative-prompt": ("negative_prompt", str), "--seed": ("seed", int), "--fit": ("fit", str),
    "--step-cache-interval": ("step_cache_interval", int),
}


def exit_code_of(error: I2VError) -> int:
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, APIConnectionError):  # timeouts included
        return EXIT_ERROR
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, InvalidRequestError):
        return EXIT_USAGE
    if isinstance(error, (RateLimitedError, ServiceUnavailableError, GenerationTimeoutError)):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def video_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {field: getattr(args, field) for field, _ in VIDEO_OPTIONS.values() if getattr(args, field) is not None}
    for pair in args.param:
        name, _, value = pair.partition("=")
        try:
            fields[name] = json.loads(value)
        except ValueError:
            fields[name] = value
    return fields


def finish(client: Client, job: JobResponse, args: argparse.Namespace, output: str | None) -> int:
    """Print the ended job (downloading its video to ``output``); the exit code it means."""
    saved = client.download(job, output) if output and job.status is JobStatus.succeeded else None
    if job.status is JobStatus.succeeded and job.result is not None:
        result = job.result
        text = (f"{job.job_id} succeeded: {saved or result.video_url} (seed {result.seed}, {result.num_frames} "
                f"frames {result.width}x{result.height}, {result.inference_time:.1f} s)")
    else:
        reason = job.error.message if job.error else job.message
        text = f"{job.job_id} {job.status.value}: {reason}"
    emit({**job.model_dump(mode="json"), **({"output": str(saved)} if saved else {})}, text, args.json)
    return EXIT_OK if job.status is JobStatus.succeeded else EXIT_JOB_FAILED


class InFlight:
    """The jobs the gateway accepted that this command has not seen to the end: a failure names
    them with the commands that resume or cancel them, so none runs on unseen."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.jobs: dict[str, JobResponse] = {}

    def accepted(self, job: JobResponse) -> JobResponse:
        self.jobs[job.job_id] = job
        return job

    def settled(self, job: JobResponse) -> None:
        self.jobs.pop(job.job_id, None)

    def command(self, *words: str) -> str:
        url = ["--url", self.args.url] if self.args.url else []
        return shlex.join(["i2v", *url, *words])

    def hint(self) -> str:
        """What to do about each job left: '' when none is."""
        parts = []
        for job_id, job in self.jobs.items():
            output = getattr(self.args, "output", None) or "VIDEO.mp4"
            resume = self.command("jobs", "wait", job_id, "-o", output)
            if job.status is JobStatus.succeeded and job.result is not None:
                parts.append(f"job {job_id} succeeded: video at {job.result.video_url}; save it with '{resume}'")
            else:
                parts.append(f"job {job_id} goes on at the gateway: follow it with '{resume}', "
                             f"cancel it with '{self.command('jobs', 'cancel', job_id)}'")
        return "; ".join(parts)

    def cancel_all(self, client: Client) -> str:
        """Ctrl-C with --cancel-on-interrupt: cancel each job left; what happened, as text."""
        done = []
        for job_id in list(self.jobs):
            try:
                client.cancel(job_id, timeout=10, max_retries=1)
            except I2VError as error:
                done.append(f"job {job_id} not cancelled ({error}): cancel it with "
                            f"'{self.command('jobs', 'cancel', job_id)}'")
            else:
                self.jobs.pop(job_id)
                done.append(f"job {job_id} cancelled")
        return "; ".join(done)


def wait_and_finish(client: Client, job: JobResponse, args: argparse.Namespace) -> int:
    args.in_flight.accepted(job)
    bar = ProgressBar()
    try:
        ended = client.wait(job, progress=bar, timeout=args.wait_timeout)
    finally:
        bar.done()
    args.in_flight.accepted(ended)  # its latest state, for the hint if saving fails
    code = finish(client, ended, args, args.output)
    args.in_flight.settled(ended)
    return code


def cmd_generate(client: Client, args: argparse.Namespace) -> int:
    # Through a job, not /generate: the job's events feed the progress bar, and its
    # Idempotency-Key makes the submission safe to retry.
    job = client.submit(args.image, args.prompt, **video_fields(args))
    return wait_and_finish(client, job, args)


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(args.image, args.prompt, callback_url=args.callback_url,
                        idempotency_key=args.idempotency_key, **video_fields(args))
    if args.wait:
        return wait_and_finish(client, job, args)
    emit(job, f"{job.job_id} {job.status.value}", args.json)
    return EXIT_OK


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    job = client.get(args.job_id)
    progress = f" step {job.progress.step}/{job.progress.total}" if job.progress else ""
    emit(job, f"{job.job_id} {job.status.value}{progress}: {job.message}", args.json)
    return EXIT_OK


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    return wait_and_finish(client, client.get(args.job_id), args)


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel(args.job_id)
    emit(job, f"{job.job_id} {job.status.value}", args.json)
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    page = client.list_jobs(args.offset, args.limit)
    lines = [f"{job.job_id}  {job.status.value:<10}  {job.created_at:%Y-%m-%d %H:%M:%S}  {job.message}"
             for job in page.jobs]
    emit(page, "\n".join(lines) if lines else "no jobs", args.json)
    return EXIT_OK


def read_batch(path: Path) -> list[dict[str, Any]]:
    """JSON Lines: one request object a line; an ``image`` is a path relative to the file."""
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}:{number}: each line must be a JSON object")
        if isinstance(item.get("image"), str):
            item["image"] = path.parent / item["image"]
        items.append(item)
    return items


def cmd_batch(client: Client, args: argparse.Namespace) -> int:
    answer = client.batch(read_batch(Path(args.file)), image=args.image, callback_url=args.callback_url,
                          **video_fields(args))
    code = EXIT_OK if answer.rejected == 0 else EXIT_JOB_FAILED
    if args.wait:
        for item in answer.items:
            if item.job is not None:
                args.in_flight.accepted(item.job)
    lines = []
    for item in answer.items:
        if item.job is None:
            lines.append(f"{item.index}  rejected  {item.error.status if item.error else ''} "
                         f"{item.error.message if item.error else ''}")
            continue
        if args.wait:
            item.job = args.in_flight.accepted(client.wait(item.job, timeout=args.wait_timeout))
            if args.output_dir and item.job.status is JobStatus.succeeded:
                Path(args.output_dir).mkdir(parents=True, exist_ok=True)
                client.download(item.job, Path(args.output_dir) / f"{item.index}-{item.job.job_id}.mp4")
            args.in_flight.settled(item.job)
            code = code if item.job.status is JobStatus.succeeded else EXIT_JOB_FAILED
        lines.append(f"{item.index}  {item.job.status.value:<9} {item.job.job_id}")
    emit(answer, "\n".join(lines), args.json)
    return code


def add_video_options(parser: argparse.ArgumentParser) -> None:
    for option, (field, kind) in VIDEO_OPTIONS.items():
        parser.add_argument(option, dest=field, type=kind)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any other request field (VALUE read as JSON when it parses)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: each option works before or after the command without one hiding the other.
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"gateway URL (I2V_API_URL, else {DEFAULT_URL})")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API key or JWT (I2V_API_TOKEN)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout")
    common.add_argument("--retries", type=int, default=argparse.SUPPRESS,
                        help="retries of 429/502/503/504 answers and network failures (default 3; "
                             "Retry-After honoured up to 30 s)")
    common.add_argument("--wait-timeout", type=float, default=argparse.SUPPRESS, metavar="S",
                        help="give up waiting for a job after S seconds (the job goes on)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="S",
                        help="seconds each request may take (default 900)")
    common.add_argument("--cancel-on-interrupt", action="store_true", default=argparse.SUPPRESS,
                        help="on Ctrl-C, cancel the job being waited for (default: leave it running)")
    parser = argparse.ArgumentParser(prog="i2v", parents=[common], epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Make videos from images with the I2VGen-XL API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", parents=[common], help="make a video and save it (shows progress)")
    generate.add_argument("image")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("-o", "--output", help="where to save the MP4 (else only its URL is printed)")
    add_video_options(generate)
    generate.set_defaults(run=cmd_generate)

    jobs = commands.add_parser("jobs", parents=[common], help="asynchronous jobs").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION")
    submit = jobs.add_parser("submit", parents=[common], help="queue a video; prints the job id")
    submit.add_argument("image")
    submit.add_argument("--prompt", required=True)
    submit.add_argument("--callback-url")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--wait", action="store_true", help="wait for the job (as jobs wait)")
    submit.add_argument("-o", "--output", help="with --wait: where to save the MP4")
    add_video_options(submit)
    submit.set_defaults(run=cmd_submit)
    for name, run, text in (("get", cmd_get, "show a job"), ("wait", cmd_wait, "wait for a job, showing progress"),
                            ("cancel", cmd_cancel, "cancel a job")):
        action = jobs.add_parser(name, parents=[common], help=text)
        action.add_argument("job_id")
        if name == "wait":
            action.add_argument("-o", "--output", help="where to save the MP4 once it succeeded")
        action.set_defaults(run=run)
    listing = jobs.add_parser("list", parents=[common], help="your jobs, newest first")
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=cmd_list)

    batch = commands.add_parser("batch", parents=[common], help="one job per line of a JSON Lines file")
    batch.add_argument("file", help="JSON Lines: request fields per line; image is a path relative to the file")
    batch.add_argument("--image", help="the image of every line that has none")
    batch.add_argument("--callback-url")
    batch.add_argument("--wait", action="store_true", help="wait for every job")
    batch.add_argument("--output-dir", help="with --wait: save each video here as INDEX-JOBID.mp4")
    add_video_options(batch)
    batch.set_defaults(run=cmd_batch)
    add_admin_commands(commands, common)  # keys, audit, usage (admin_cli.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on bad usage
    for name, default in (("url", None), ("token", None), ("json", False), ("retries", 3), ("wait_timeout", None),
                          ("timeout", None), ("cancel_on_interrupt", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    args.in_flight = InFlight(args)
    token = args.token if args.token is not None else os.environ.get("I2V_API_TOKEN")
    try:
        client = Client(args.url, token, retry=RetryPolicy(max_retries=args.retries),
                        **({"timeout": args.timeout} if args.timeout else {}))
    except I2VError as error:
        return fail(str(error), exit_code_of(error), args.in_flight)
    try:
        with client:
            return int(args.run(client, args))
    except I2VError as error:
        return fail(str(error), exit_code_of(error), args.in_flight)
    except (OSError, ValueError) as error:  # an unreadable image or batch file, an unwritable output
        return fail(str(error), EXIT_USAGE, args.in_flight)
    except KeyboardInterrupt:
        if args.cancel_on_interrupt and args.in_flight.jobs:
            with Client(args.url, token) as fresh:
                return fail(f"interrupted; {args.in_flight.cancel_all(fresh)}", EXIT_INTERRUPTED, args.in_flight)
        return fail("interrupted", EXIT_INTERRUPTED, args.in_flight)


def fail(message: str, code: int, in_flight: InFlight) -> int:
    """One line on stderr: the error, then what to do about the jobs it leaves."""
    hint = in_flight.hint()
    print(f"i2v: error: {message}" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
