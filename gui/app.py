"""`labctl gui`: open the main window; optionally run one protocol, save a screenshot and exit.

Headless use (CI, docs): `labctl gui --station sim --run forming --screenshot f.png --exit`
runs the protocol from the window, saves the window (QWidget.grab) once the run has ended and
exits with the run's status: 0 completed, 1 aborted or failed, 2 refused input. Without a
display (no DISPLAY / WAYLAND_DISPLAY) and with --exit, Qt's offscreen platform is used.
"""
from __future__ import annotations

import os
import signal
import sys
from datetime import date
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(args, config) -> int:
    """Run the GUI for the station `config` with the `labctl gui` options in `args`."""
    if args.exit and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import qInstallMessageHandler

    qInstallMessageHandler(_qt_messages)
    previous_hook, sys.excepthook = sys.excepthook, _log_exception  # PyQt aborts on an exception in a slot
    try:
        return _main(args, config)
    finally:
        sys.excepthook = previous_hook
        qInstallMessageHandler(None)


def _main(args, config) -> int:
    from PyQt6.QtCore import QEventLoop, QTimer
    from PyQt6.QtWidgets import QApplication

    from labctl.params import ParameterError, parse_settings

    from .window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("labctl")
    values = parse_settings(args.set or [])
    out = Path(args.out) if args.out else Path("labctl_data") / f"{date.today():%Y%m%d}.h5"
    window = MainWindow(config, out, sim_state=args.sim_state, seed=args.seed)
    window.show()
    previous_sigint = signal.signal(signal.SIGINT, lambda *_: window.close())  # Ctrl-C: close safely
    loop = QEventLoop()
    outcome = {"code": EXIT_OK}
    window.closed.connect(lambda: loop.exit(outcome["code"]))

    def finish(code: int) -> None:
        outcome["code"] = code
        if args.screenshot:
            window.live.redraw()
            window.chip.redraw()
            app.processEvents()
            target = Path(args.screenshot)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(target)):
                print(f"labctl gui: could not save {target}", file=sys.stderr)
                outcome["code"] = code or EXIT_FAILED
        if args.exit:
            window.close()

    if args.run:
        try:
            window.protocol_panel.select(args.run)
        except KeyError:
            print(f"labctl: unknown protocol {args.run!r} (protocols: {', '.join(window.protocols)})",
                  file=sys.stderr)
            outcome["code"] = EXIT_USAGE
            window.close()
            return _wait(loop, window, outcome, previous_sigint)
        try:
            for name, value in values.items():
                window.protocol_panel.form.set_value(name, value)
        except ParameterError as exc:
            print(f"labctl: {exc}", file=sys.stderr)
            outcome["code"] = EXIT_USAGE
            window.close()
            return _wait(loop, window, outcome, previous_sigint)

        def done(result) -> None:
            code = EXIT_OK if result is not None and result.status == "completed" else EXIT_FAILED
            if result is not None:
                print(f"{result.protocol} {result.status}: run {result.run_id} in {result.file}"
                      + (f" ({result.error})" if result.error else ""))
            QTimer.singleShot(100, lambda: finish(code))  # let the last redraws land first

        window.run_done.connect(done)
        if not window.start_run():
            print("labctl: " + "; ".join(window.protocol_panel.check()[1]), file=sys.stderr)
            outcome["code"] = EXIT_USAGE
            window.close()
    elif args.exit or args.screenshot:  # once the station has answered
        def connected(state: str, _identities: dict) -> None:
            window.worker.state_changed.disconnect(connected)
            QTimer.singleShot(200, lambda: finish(EXIT_OK if state == "connected" else EXIT_FAILED))

        window.worker.state_changed.connect(connected)
    return _wait(loop, window, outcome, previous_sigint)


def _log_exception(kind, value, tb) -> None:
    import logging

    logging.getLogger(__name__).error("unexpected error", exc_info=(kind, value, tb))


def _qt_messages(mode, context, message: str | None) -> None:
    """Qt's own warnings to stderr, less the offscreen platform's noise about window hints."""
    if message is None or "propagateSizeHints" in message:
        return
    print(message, file=sys.stderr)


def _wait(loop, window, outcome, previous_sigint) -> int:
    """Run the event loop until the window has closed (after its worker stopped)."""
    try:
        loop.exec()
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
    window.deleteLater()
    return outcome["code"]
