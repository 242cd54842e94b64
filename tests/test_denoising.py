"""One batch through a per-run copy of the pipeline: per-image noise, a private scheduler, shared models."""

import torch

from storydiffusion.attention import ImageSlot
from storydiffusion.denoising import consistency_context, initial_latents, run_copy
from storydiffusion.settings import GenerationSettings


def resolved(**options):
    return GenerationSettings(steps=4, guidance=5.0, height=64, width=64, **options)


def test_an_images_noise_does_not_depend_on_its_batch(tiny_sdxl):
    settings = resolved()
    batch = initial_latents(tiny_sdxl.pipe, [5, 6, 7], settings)
    alone = initial_latents(tiny_sdxl.pipe, [6], settings)
    assert batch.shape == (3, 4, 8, 8)  # the tiny VAE divides each side by 8, as the real ones do
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_run_copy_shares_the_models_but_not_the_scheduler(tiny_sdxl):
    copy = run_copy(tiny_sdxl.pipe)
    assert copy.unet is tiny_sdxl.pipe.unet and copy.vae is tiny_sdxl.pipe.vae
    assert copy.scheduler is not tiny_sdxl.pipe.scheduler
    assert type(copy.scheduler) is type(tiny_sdxl.pipe.scheduler)
    assert copy.config.force_zeros_for_empty_prompt == tiny_sdxl.pipe.config.force_zeros_for_empty_prompt
    assert type(run_copy(tiny_sdxl.pipe, "ddim").scheduler).__name__ == "DDIMScheduler"


def test_consistency_context_counts_latent_tokens_and_reads_the_settings(tiny_sdxl):
    settings = resolved(seed=9, first_consistent_step=1, random_skip_early=0.25)
    context = consistency_context(tiny_sdxl.pipe, [ImageSlot(0), ImageSlot(1, reads_batch=(0,))], settings, None)
    assert context.latent_tokens == 8 * 8 and context.num_images == 2
    assert (context.seed, context.total_steps, context.first_consistent_step) == (9, 4, 1)
    assert context.skip_early == 0.25 and context.step == 0


def test_every_tokenizer_method_waits_for_a_call_in_progress():
    """tokenize() once reset the padding another thread's call had just set: all methods take turns."""
    import threading

    from storydiffusion.denoising import SerialTokenizer
    from storydiffusion.tokenizer import build_clip_tokenizer

    events = []
    inside = threading.Event()
    release = threading.Event()

    class Recording:
        model_max_length = 77

        def __call__(self, text):
            events.append("call starts")
            inside.set()
            release.wait(5)
            events.append("call ends")
            return text

        def tokenize(self, text):
            events.append("tokenize")
            return [text]

    shared = SerialTokenizer(Recording())
    caller = threading.Thread(target=shared, args=("a",))
    caller.start()
    inside.wait(5)
    other = threading.Thread(target=shared.tokenize, args=("b",))
    other.start()
    other.join(0.3)  # tokenize must still be waiting for the call
    release.set()
    caller.join(5)
    other.join(5)
    assert events == ["call starts", "call ends", "tokenize"]
    assert shared.model_max_length == 77
    real = SerialTokenizer(build_clip_tokenizer())
    assert real.tokenize("a red hat") == build_clip_tokenizer().tokenize("a red hat")
    assert len(real("a red hat", padding="max_length").input_ids) == 77
