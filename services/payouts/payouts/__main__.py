from common.logging import configure_logging
from common.runtime import serve
from payouts.app import create_app
from payouts.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.service_name, settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
