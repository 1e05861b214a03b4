from common.runtime import main
from tenants.app import create_app
from tenants.settings import Settings

if __name__ == "__main__":
    main(Settings, create_app)
