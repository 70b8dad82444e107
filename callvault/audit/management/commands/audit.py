"""`callvault audit`: the signing key, the sealer, checkpoints, verification and retention."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from callvault.audit import chain, checkpoints, retention, signing
from callvault.audit.context import system_run
from callvault.audit.recorder import record_event
from callvault.audit.verify import trusted_keys, verify


def _public_keys(paths: list[str]) -> list[Any]:
    try:
        return [signing.load_public_key(Path(p).read_text(encoding="utf-8")) for p in paths]
    except (OSError, ValueError) as exc:
        raise CommandError(f"--public-key: {exc}") from None


class Command(BaseCommand):
    """Audit trail maintenance."""

    help = "The audit trail: keygen, seal, checkpoint, verify, archive, verify-archive."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        keygen = sub.add_parser("keygen", help="create the signing key (refuses to overwrite)")
        keygen.add_argument("--show", action="store_true", help="print the existing public key")
        sub.add_parser("seal", help="link committed events to the chain now")
        cp = sub.add_parser("checkpoint", help="seal, sign every chain head and export them")
        cp.add_argument("--out", help="write the checkpoint file here")
        cp.add_argument("--post", metavar="URL", help="POST the checkpoint file to this URL")
        ver = sub.add_parser("verify", help="check every chain, checkpoint and prune record")
        ver.add_argument("--checkpoint", action="append", default=[], metavar="FILE")
        ver.add_argument("--public-key", action="append", default=[], metavar="FILE")
        ver.add_argument("--batch", type=int, default=10_000)
        arc = sub.add_parser("archive", help="archive and prune events past their retention")
        arc.add_argument("--project", help="slug or id (default: every project with retention)")
        arc.add_argument("--out", help="archive folder (default CALLVAULT_AUDIT_ARCHIVE_DIR)")
        va = sub.add_parser("verify-archive", help="check an archive file on its own")
        va.add_argument("file")
        va.add_argument("--public-key", action="append", default=[], metavar="FILE")

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"].replace("-", "_")
        with system_run(f"audit {opts['action']}"):
            getattr(self, f"do_{action}")(**opts)

    def do_keygen(self, *, show: bool, **opts: Any) -> None:
        path = signing.key_path()
        if not show:
            try:
                signing.create_key_file(path)
            except FileExistsError as exc:
                raise CommandError(str(exc)) from None
        elif not path.exists():
            raise CommandError(f"no audit signing key at {path}")
        public = signing.load_private_key().public_key()
        if not show:
            record_event(
                "audit.key_created",
                project_id=None,
                object_type="audit_key",
                object_id=signing.fingerprint(public),
            )
            self.stdout.write(self.style.WARNING(f"Audit signing key created at {path}."))
        self.stdout.write(f"fingerprint: {signing.fingerprint(public)}")
        self.stdout.write(signing.public_key_pem(public).rstrip())

    def do_seal(self, **opts: Any) -> None:
        self.stdout.write(f"sealed {chain.seal_pending()} events")

    def do_checkpoint(self, *, out: str | None, post: str | None, **opts: Any) -> None:
        sealed = chain.seal_pending()
        created = checkpoints.write_checkpoints()
        document = checkpoints.export_document()
        if post:
            try:
                status = checkpoints.post_document(document, post)
            except (OSError, ValueError) as exc:
                raise CommandError(f"posting the checkpoint failed: {exc}") from None
            self.stdout.write(f"posted to {post}: HTTP {status}")
        if out or not post:
            stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
            path = Path(out) if out else settings.AUDIT_CHECKPOINT_DIR / f"checkpoint-{stamp}.json"
            checkpoints.save_document(document, path)
            self.stdout.write(f"wrote {path}")
        self.stdout.write(
            f"sealed {sealed} events; {len(created)} new checkpoints; "
            f"{len(document['checkpoints'])} chains in the file"
        )

    def do_verify(
        self, *, checkpoint: list[str], public_key: list[str], batch: int, **opts: Any
    ) -> None:
        keys = trusted_keys(_public_keys(public_key))
        if not keys:
            raise CommandError("no key to check signatures with: give --public-key FILE")
        started = time.perf_counter()
        report = verify(keys=keys, checkpoint_files=[Path(p) for p in checkpoint], batch_size=batch)
        elapsed = time.perf_counter() - started
        self.stdout.write(
            f"{report.chains} chains, {report.links} links, {report.checkpoints} checkpoints, "
            f"{report.prune_records} prune records checked in {elapsed:.1f} s; "
            f"not sealed yet: {report.unsealed} new and {report.pending} late events"
        )
        if report.ok:
            self.stdout.write(self.style.SUCCESS("audit trail OK"))
            return
        for problem in report.problems:
            self.stderr.write(f"BROKEN {problem}")
        raise CommandError(f"the audit trail does not verify ({len(report.problems)} chains)")

    def do_archive(self, *, project: str | None, out: str | None, **opts: Any) -> None:
        folder = Path(out) if out else settings.AUDIT_ARCHIVE_DIR
        ids = [self._project_id(project)] if project else None
        try:
            done = retention.archive_expired(folder, ids)
        except retention.ChainBrokenError as exc:
            raise CommandError(f"{exc}: run `callvault audit verify`; nothing archived") from None
        for item in done:
            rec = item.record
            self.stdout.write(
                f"chain {rec.chain_key}: seqs {rec.first_seq}-{rec.last_seq} "
                f"({rec.event_count} events) archived to {item.path} and pruned"
            )
        if not done:
            self.stdout.write("nothing to archive")

    def _project_id(self, value: str) -> int:
        project = apps.get_model("accounts", "Project")
        projects = project.objects.all()
        projects = (
            projects.filter(pk=int(value)) if value.isdigit() else projects.filter(slug=value)
        )
        found = projects.values_list("pk", flat=True).first()
        if found is None:
            raise CommandError(f"no project {value!r}")
        return int(found)

    def do_verify_archive(self, *, file: str, public_key: list[str], **opts: Any) -> None:
        keys = trusted_keys(_public_keys(public_key))
        result = retention.verify_archive(Path(file), keys)
        if result.problem:
            raise CommandError(f"{file}: {result.problem}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{file}: chain {result.chain_key} seqs {result.first_seq}-{result.last_seq}, "
                f"{result.events} events, signed by {result.signed_by}"
            )
        )
