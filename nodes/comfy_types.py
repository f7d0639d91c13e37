"""The pack's custom ComfyUI socket types, declared once."""

from comfy_api.latest import io

#: A provider object (remote client or local diffusers runner) for ImgEditImg2Img / ImgEditInpaint.
PROVIDER = io.Custom("IMGEDIT_PROVIDER")
#: An immutable crop record from ImgEditCropToMask for ImgEditStitch.
STITCH = io.Custom("IMGEDIT_STITCH")
