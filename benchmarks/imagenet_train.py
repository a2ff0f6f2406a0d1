"""ImageNet recipe: crop a keras.applications model, then train it with tf.distribute.

Ready for a lent GPU/TPU or Colab; not run on the 2-core CPU machines here
(only its ``--fake-data`` smoke mode is, in tests). Data: an ImageNet folder
(``DIR/train/<class>/*.JPEG`` and ``DIR/val/<class>/*.JPEG``) read with
``keras.utils.image_dataset_from_directory``, or ``--tfds imagenet2012`` when
tensorflow-datasets and the prepared data are available.

Recipe (standard for MobileNetV2/ResNet50 from scratch): SGD momentum 0.9,
lr 0.1 × batch/256 with 5 warm-up epochs and cosine decay, weight decay 4e-5
(MobileNetV2) / 1e-4 (ResNet50), label smoothing 0.1, random-resized-crop-like
crop + flip at 224×224, global batch 256 per 8 accelerators... scaled with
the replicas found. Example on one GPU::

    python benchmarks/imagenet_train.py --model MobileNetV2 --data-dir /data/imagenet \
        --target 0.5 --budget macs --method synexp --epochs 150 --batch-size 256

On a TPU in Colab add ``--strategy tpu``; several GPUs: ``--strategy mirrored``.
"""

import argparse
import os
import sys


def make_strategy(name):
    import tensorflow as tf

    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_datasets(args):
    import keras
    import tensorflow as tf

    size = args.image_size
    if args.fake_data:
        n = args.batch_size * 2
        x = tf.random.uniform((n, size, size, 3), 0, 255)
        y = tf.random.uniform((n,), 0, args.classes, dtype=tf.int64)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size)
        return ds, ds
    if args.tfds:
        import tensorflow_datasets as tfds

        train, val = tfds.load(args.tfds, split=["train", "validation"], as_supervised=True)
        train = train.map(lambda im, lab: (tf.image.resize(im, (size + 32, size + 32)), lab))
        val = val.map(lambda im, lab: (tf.image.resize(im, (size, size)), lab))
        train, val = train.batch(args.batch_size), val.batch(args.batch_size)
    else:
        kwargs = dict(label_mode="int", batch_size=args.batch_size, seed=0)
        train = keras.utils.image_dataset_from_directory(
            os.path.join(args.data_dir, "train"), image_size=(size + 32, size + 32), shuffle=True, **kwargs
        )
        val = keras.utils.image_dataset_from_directory(
            os.path.join(args.data_dir, "val"), image_size=(size, size), shuffle=False, **kwargs
        )

    def augment(images, labels):
        images = tf.image.random_crop(images, (tf.shape(images)[0], size, size, 3))
        return tf.image.random_flip_left_right(images), labels

    train = train.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return train, val.prefetch(tf.data.AUTOTUNE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="MobileNetV2", choices=["MobileNetV2", "ResNet50"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tfds", default=None, help="e.g. imagenet2012")
    parser.add_argument("--fake-data", action="store_true", help="smoke test on random images")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--budget", default="macs", choices=["params", "macs"])
    parser.add_argument("--method", default="synexp")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--strategy", default="auto", choices=["auto", "mirrored", "tpu"])
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--log-dir", default="imagenet_run")
    args = parser.parse_args(argv)
    if not (args.fake_data or args.data_dir or args.tfds):
        parser.error("give --data-dir, --tfds or --fake-data")

    import keras

    import tf_precrop
    from tf_precrop import training

    strategy = make_strategy(args.strategy)
    shape = (args.image_size, args.image_size, 3)

    def model_fn():
        base = getattr(keras.applications, args.model)(weights=None, input_shape=shape, classes=args.classes,
                                                       classifier_activation=None)
        inputs = keras.Input(shape)
        # Raw [0, 255] pixels in; the model scales them itself (TFLite-ready).
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="input_scale")(inputs)
        wrapped = keras.Model(inputs, base(x), name=base.name)
        return tf_precrop.crop(wrapped, args.target, budget=args.budget, method=args.method, verbose=0, seed=0)

    train_ds, val_ds = make_datasets(args)
    config = training.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=0.1 * 128 / 256, schedule="cosine",
        warmup_epochs=min(5, max(0, args.epochs - 1)), label_smoothing=0.1,
        weight_decay=4e-5 if args.model == "MobileNetV2" else 1e-4,
        mixed_precision=args.mixed_precision, augment=False, steps_per_epoch=args.steps_per_epoch, seed=0,
    )
    result = training.train(
        model_fn=model_fn, train_data=train_ds, val_data=val_ds, config=config, strategy=strategy,
        log_dir=args.log_dir, verbose=1 if not args.fake_data else 0,
    )
    print(f"val accuracy {result.val_accuracy}, {result.images_per_sec:.0f} images/s, replicas "
          f"{strategy.num_replicas_in_sync}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
