from backoffice.app import create_app
from backoffice.settings import Settings
from common.logging import configure_logging
from common.runtime import serve


def main() -> None:
    settings = Settings()
    configure_logging(settings.service_name, settings.log_level)
    serve(create_app(settings), settings, shutdown_timeout=5)


if __name__ == "__main__":
    main()
