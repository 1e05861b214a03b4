"""Logs never show cardholder data or secrets (DESIGN §2 invariant 7), from structlog or from
the standard library, and carry the correlation id."""

import json
import logging
import sys

import pytest

from common.logging import (
    REDACTED,
    configure_logging,
    correlation,
    current_correlation_id,
    get_logger,
    scrub_text,
)

PANS = ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559"]


class CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_lines(capsys):
    """configure_logging into the captured stdout; the log lines written so far, parsed."""
    configure_logging("logging-test", "DEBUG")
    # pytest swaps sys.stdout between the setup and call phases: follow the current one
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_marketpay", False):
            handler.setStream(CurrentStdout())  # type: ignore[attr-defined]

    def read() -> tuple[str, list[dict]]:
        out = capsys.readouterr().out
        return out, [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    yield read
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_marketpay", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def test_structlog_events_are_redacted_by_key_and_by_value(log_lines):
    # given
    log = get_logger("probe")
    # when
    log.info(
        "payment details",
        note="card 4111111111111111 then 4111 1111 1111 1111 exp 12/30",
        headers={"Authorization": "Bearer test_secret-token-1", "Accept": "*/*"},
        hmac_key="44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        password="hunter2-password",
        paymentMethod={"encryptedCardNumber": "adyenjs_0_1_25$enc-pan-blob",
                       "encryptedSecurityCode": "adyenjs_0_1_25$enc-cvc-blob"},
        target="postgresql://mp_user:db-password-1@127.0.0.1:5432/marketpay",
        free_text="connecting with host=db password=kw-password-2 user=mp",
        amount=1000,
        idempotency_key="idem-1",
    )  # fmt: skip
    # then
    out, lines = log_lines()
    for secret in ["4111111111111111", "4111 1111 1111 1111", "test_secret-token-1",
                   "44782DEF", "hunter2-password", "enc-pan-blob", "enc-cvc-blob",
                   "db-password-1", "kw-password-2"]:  # fmt: skip
        assert secret not in out
    (line,) = [line for line in lines if line["event"] == "payment details"]
    assert REDACTED in line["note"]
    assert line["hmac_key"] == REDACTED
    assert line["password"] == REDACTED
    assert line["paymentMethod"]["encryptedCardNumber"] == REDACTED
    assert line["headers"]["Authorization"] == REDACTED
    assert line["headers"]["Accept"] == "*/*"  # what is not secret stays readable
    assert line["amount"] == 1000
    assert line["idempotency_key"] == "idem-1"
    assert line["target"] == f"postgresql://{REDACTED}@127.0.0.1:5432/marketpay"
    assert line["service"] == "logging-test"
    assert line["level"] == "info"


@pytest.mark.parametrize("pan", PANS)
def test_standard_library_records_are_redacted_too(log_lines, pan):
    # given a library that logs through the standard library, with %-style arguments
    library = logging.getLogger("some.library")
    # when
    library.warning("declined card %s for %s", pan, "Bearer live_key-123")
    library.warning(f"inline {pan}")
    # then
    out, lines = log_lines()
    assert pan not in out
    assert "live_key-123" not in out
    assert [line["event"] for line in lines] == [
        f"declined card {REDACTED} for Bearer {REDACTED}",
        f"inline {REDACTED}",
    ]


def test_tracebacks_are_redacted(log_lines):
    # given
    log = get_logger("probe")
    # when
    try:
        raise ValueError("bad card 4111111111111111")
    except ValueError:
        log.exception("failed")
    # then
    out, lines = log_lines()
    assert "4111111111111111" not in out
    (line,) = lines
    assert "ValueError" in line["exception"]
    assert REDACTED in line["exception"]


def test_the_correlation_id_is_on_every_line_while_bound(log_lines):
    # given
    log = get_logger("probe")
    # when
    with correlation("corr-1", tenant_id="ten_1"):
        assert current_correlation_id() == "corr-1"
        log.info("inside")
        logging.getLogger("some.library").warning("library inside")
    log.info("outside")
    # then
    _, lines = log_lines()
    by_event = {line["event"]: line for line in lines}
    assert by_event["inside"]["correlation_id"] == "corr-1"
    assert by_event["inside"]["tenant_id"] == "ten_1"
    assert by_event["library inside"]["correlation_id"] == "corr-1"
    assert "correlation_id" not in by_event["outside"]
    assert current_correlation_id() is None


@pytest.mark.parametrize(
    "text",
    [
        "qty 2 4111111111111111",  # a PAN next to another number
        "4111111111111111 12/30",
        "4111 1111 1111 1111 12 30",
        "pan=4111111111111111;",
    ],
)
def test_a_pan_next_to_other_numbers_is_still_found(text):
    # when
    scrubbed = scrub_text(text)
    # then
    assert "4111" not in scrubbed
    assert REDACTED in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "amount 1000 of 2000",
        "order 123456789012 shipped",  # 12 digits failing the Luhn check
        "at 2024-01-15 10:20:30",
        "id 6f1c2a9e-3b1d-4c5e-9f0a-1b2c3d4e5f60",
    ],
)
def test_ordinary_numbers_stay_readable(text):
    # when / then
    assert scrub_text(text) == text


def test_other_handlers_on_the_root_logger_receive_redacted_events(log_lines):
    # given another handler on the root logger (a library's, a test runner's)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    other = Keep()
    logging.getLogger().addHandler(other)
    try:
        # when
        get_logger("probe").info("charged", card_number="4111111111111111", note="4111111111111111")
    finally:
        logging.getLogger().removeHandler(other)
    # then
    assert records
    assert all("4111111111111111" not in str(r.msg) for r in records)


def test_standard_library_exceptions_are_redacted(log_lines):
    # when
    try:
        raise RuntimeError("card 4111 1111 1111 1111 refused")
    except RuntimeError:
        logging.getLogger("some.library").exception("library failed")
    # then
    out, _ = log_lines()
    assert "4111 1111 1111 1111" not in out
    assert "RuntimeError" in out


@pytest.mark.parametrize(
    "identifier",
    [
        "cap_061180053987f56e56d66ac8",  # a 12-digit Luhn-valid run inside a hex id
        "pay_4111111111111111",  # a test PAN glued to a prefix is an id, not a card
        "ntf_0611800539874111111111111111x",
        "4111111111111111abc",
    ],
)
def test_ids_that_contain_digit_runs_stay_intact(log_lines, identifier):
    # given
    log = get_logger("probe")
    # when
    log.info("captured", capture_id=identifier, note=f"capture {identifier} sent")
    # then
    _, lines = log_lines()
    (line,) = [line for line in lines if line["event"] == "captured"]
    assert line["capture_id"] == identifier
    assert line["note"] == f"capture {identifier} sent"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pan=4111111111111111;", f"pan={REDACTED};"),
        ('{"number": "5555 4444 3333 1111"}', f'{{"number": "{REDACTED}"}}'),
        ("card:4111-1111-1111-1111 exp 03/30", f"card:{REDACTED} exp 03/30"),
        ("not luhn 4111111111111112 stays", "not luhn 4111111111111112 stays"),
    ],
)
def test_only_luhn_valid_numbers_standing_alone_are_redacted(log_lines, text, expected):
    # when
    get_logger("probe").info("free text", note=text)
    # then
    _, lines = log_lines()
    (line,) = [line for line in lines if line["event"] == "free text"]
    assert line["note"] == expected


def test_client_library_errors_are_warnings_and_the_services_own_stay_errors(log_lines):
    # when
    logging.getLogger("aiormq.connection").error("Unexpected connection close from remote")
    logging.getLogger("asyncpg.pool").error("connection lost")
    get_logger("marketpay.consumer").error("message dead-lettered")
    # then
    _, lines = log_lines()
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("aiormq.connection", "warning"),
        ("asyncpg.pool", "warning"),
        ("marketpay.consumer", "error"),
    ]
