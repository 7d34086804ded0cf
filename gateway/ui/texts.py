"""Every string of the UI, in English and Chinese: one table, picked by the browser's language."""

from __future__ import annotations

LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "I2VGen-XL image to video",
        "intro": "Drop in a picture, say what should happen, and watch it move.",
        "sign_in_title": "Sign in",
        "sign_in_intro": "Use one of this gateway's API keys (the same key works with the REST API).",
        "api_key": "API key",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "wrong_key": "That key is not valid here.",
        "key_cannot_generate": "That key may not make videos here (it lacks the generate scope).",
        "locked_out": "Too many wrong keys from this address. Wait {seconds} s, then try again.",
        "signed_in_as": "Signed in as",
        "language": "Language",
        "image": "Image (upload, drag and drop, or paste)",
        "prompt": "Prompt",
        "prompt_placeholder": "a cat walking in the garden",
        "negative_prompt": "Negative prompt",
        "resolution": "Resolution",
        "frames": "Frames",
        "fps": "Frames per second",
        "steps": "Denoising steps",
        "guidance": "Guidance scale",
        "seed": "Seed",
        "random_seed": "Random seed",
        "fit": "Fit",
        "output_format": "Output format",
        "generate": "Generate",
        "cancel": "Cancel",
        "examples": "Examples: click one to fill the form",
        "status_idle": "Ready.",
        "status_queued": "Queued",
        "queue_position": "position in queue",
        "status_running": "Running",
        "step": "step",
        "eta": "about {seconds} s left",
        "status_succeeded": "Done",
        "status_failed": "Failed",
        "status_cancelled": "Cancelled",
        "status_cancelling": "Cancelling...",
        "no_image": "Choose an image first.",
        "upload_expired": "That upload has expired; upload the image again.",
        "no_prompt": "Write a prompt first.",
        "result": "Result",
        "download": "Download the video",
        "poster": "Poster",
        "parameters_used": "Seed and parameters used",
        "gallery": "Your recent videos (click one to reuse its settings)",
        "refresh": "Refresh",
        "nothing_to_cancel": "Nothing is running.",
        "status_error": "Error",
        "signed_out": "Signed out: sign in again. What you typed stays on this page.",
        "sign_in_again": "Sign in",
        "already_running": "This page is already making a video: wait for it, or cancel it first.",
        "resumed": "Following your video that is still being made.",
        "image_too_big": "This picture is {size} MB; the largest accepted is {limit} MB. Choose a smaller one.",
        "image_too_many_pixels": "This picture is {width} × {height} pixels; the largest accepted is {limit} "
                                 "million pixels. Choose a smaller one.",
        "not_an_image": "This file is not a picture that can be read. Use a PNG, JPEG or WebP image.",
        "field_problem": "{field}: {problem}",
        "whole_number": "use a whole number from {low} to {high}",
        "out_of_range": "use a value from {low} to {high}",
        "newer": "Newer",
        "older": "Older",
        "page": "Page {page}",
        "no_videos": "No videos yet.",
        "reuse_image_gone": "The settings are back; the picture of that video is no longer kept, so add it again.",
        "usage_month": "This month: videos {videos}, frames {frames}, compute units {compute_units}, "
                       "model seconds {model_seconds}, from the cache {cache_hits}, failed {failed}.",
        "usage_unavailable": "Usage cannot be read right now.",
        "quota_videos_per_day": "Videos today: {used} of {limit} (resets {resets})",
        "quota_videos_per_month": "Videos this month: {used} of {limit} (resets {resets})",
        "quota_compute_units_per_day": "Compute units today: {used} of {limit} (resets {resets})",
        "quota_compute_units_per_month": "Compute units this month: {used} of {limit} (resets {resets})",
        "quota_reached": ": reached, new videos wait for the reset",
    },
    "zh": {
        "title": "I2VGen-XL 图像生成视频",
        "intro": "上传一张图片，描述画面中应发生的事情，然后看它动起来。",
        "sign_in_title": "登录",
        "sign_in_intro": "使用本网关的 API 密钥登录（与 REST API 使用同一密钥）。",
        "api_key": "API 密钥",
        "sign_in": "登录",
        "sign_out": "退出登录",
        "wrong_key": "该密钥在此无效。",
        "key_cannot_generate": "该密钥无权在此生成视频（缺少 generate 权限范围）。",
        "locked_out": "此地址输错密钥的次数过多。请等待 {seconds} 秒后再试。",
        "signed_in_as": "当前身份",
        "language": "语言",
        "image": "图片（上传、拖放或粘贴）",
        "prompt": "提示词",
        "prompt_placeholder": "一只猫在花园里散步",
        "negative_prompt": "反向提示词",
        "resolution": "分辨率",
        "frames": "帧数",
        "fps": "每秒帧数",
        "steps": "去噪步数",
        "guidance": "引导系数",
        "seed": "随机种子",
        "random_seed": "随机种子（每次不同）",
        "fit": "适配方式",
        "output_format": "输出格式",
        "generate": "生成",
        "cancel": "取消",
        "examples": "示例：点击一个即可填入表单",
        "status_idle": "就绪。",
        "status_queued": "排队中",
        "queue_position": "队列位置",
        "status_running": "生成中",
        "step": "步",
        "eta": "预计还需 {seconds} 秒",
        "status_succeeded": "完成",
        "status_failed": "失败",
        "status_cancelled": "已取消",
        "status_cancelling": "正在取消……",
        "no_image": "请先选择一张图片。",
        "upload_expired": "上传的图片已过期，请重新上传。",
        "no_prompt": "请先填写提示词。",
        "result": "结果",
        "download": "下载视频",
        "poster": "封面",
        "parameters_used": "使用的种子和参数",
        "gallery": "你最近的视频（点击一个以复用其设置）",
        "refresh": "刷新",
        "nothing_to_cancel": "当前没有正在运行的任务。",
        "status_error": "错误",
        "signed_out": "已退出登录：请重新登录。你填写的内容仍保留在本页。",
        "sign_in_again": "登录",
        "already_running": "本页正在生成一个视频：请等待完成，或先取消。",
        "resumed": "正在继续显示你尚未完成的视频。",
        "image_too_big": "这张图片有 {size} MB，最大只接受 {limit} MB。请换一张较小的图片。",
        "image_too_many_pixels": "这张图片是 {width} × {height} 像素，最大只接受 {limit} 百万像素。"
                                 "请换一张较小的图片。",
        "not_an_image": "无法读取这个文件中的图片。请使用 PNG、JPEG 或 WebP 图片。",
        "field_problem": "{field}：{problem}",
        "whole_number": "请填写 {low} 到 {high} 之间的整数",
        "out_of_range": "请填写 {low} 到 {high} 之间的数值",
        "newer": "较新",
        "older": "较早",
        "page": "第 {page} 页",
        "no_videos": "还没有视频。",
        "reuse_image_gone": "设置已恢复；该视频的图片已不再保存，请重新添加图片。",
        "usage_month": "本月：{videos} 个视频，{frames} 帧，{compute_units} 计算单位，模型用时 {model_seconds} 秒，"
                       "{cache_hits} 个来自缓存，{failed} 个失败。",
        "usage_unavailable": "暂时无法读取用量。",
        "quota_videos_per_day": "今日视频：{used} / {limit}（{resets} 重置）",
        "quota_videos_per_month": "本月视频：{used} / {limit}（{resets} 重置）",
        "quota_compute_units_per_day": "今日计算单位：{used} / {limit}（{resets} 重置）",
        "quota_compute_units_per_month": "本月计算单位：{used} / {limit}（{resets} 重置）",
        "quota_reached": "：已用完，新视频需等到重置之后",
    },
}


def pick_language(accept_language: str | None) -> str:
    """The first supported language of an ``Accept-Language`` header (or ``navigator.language``),
    by quality; English when none matches."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:  # q=0 (or unreadable) means "not this one"
            ranked.append((-quality, index, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def text(language: str, key: str) -> str:
    return TEXTS.get(language, TEXTS[DEFAULT_LANGUAGE])[key]
