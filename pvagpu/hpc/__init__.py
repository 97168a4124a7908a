"""The processor classes of pvapy.hpc, with p4p Values for PvObjects."""
from .user_data_processor import UserDataProcessor
from .ad_image_processor import AdImageProcessor
from .ad_output_file_processor import AdOutputFileProcessor
from .hdf5_output_processor import Hdf5OutputProcessor
from .data_encryptor import DataEncryptor
from .ad_image_data_encryptor import AdImageDataEncryptor
from .data_decryptor import DataDecryptor
from .ad_image_data_decryptor import AdImageDataDecryptor
from .user_mp_data_processor import UserMpDataProcessor
from .user_mp_worker import UserMpWorker
from .user_mp_worker_controller import UserMpWorkerController

__all__ = ["UserDataProcessor", "AdImageProcessor", "AdOutputFileProcessor", "Hdf5OutputProcessor",
           "DataEncryptor", "AdImageDataEncryptor", "DataDecryptor", "AdImageDataDecryptor",
           "UserMpDataProcessor", "UserMpWorker", "UserMpWorkerController"]
