"""Short chat replies for benchmarks/language_id.py, written for it: per language, one to four words (SHORT), one
sentence (SENTENCES), a sentence with English terms and code in it (MIXED), and lines of formatted replies
(LINES: list items, headings, kanji-heavy Japanese, short Russian), and DRIFT: English as a chat model writes
it, the language a merge drifts into, written after lingua called "Hello, I am an assistant." Italian."""

# ruff: noqa: E501 - data: one language a line group, as written
# fmt: off
SHORT = {
 "zh": ["好的。", "没问题！", "谢谢你。", "当然可以。", "我不知道。", "明白了"],
 "ja": ["はい、わかりました。", "ありがとう！", "もちろんです。", "そうですね。", "知りません。", "了解です"],
 "ko": ["네, 알겠습니다.", "감사합니다!", "물론이죠.", "좋아요.", "모르겠어요.", "그렇군요"],
 "en": ["Sure thing!", "Thank you.", "I don't know.", "Of course.", "Sounds good.", "Got it"],
 "fr": ["D'accord.", "Merci beaucoup !", "Je ne sais pas.", "Bien sûr.", "Avec plaisir.", "C'est noté"],
 "de": ["Alles klar.", "Vielen Dank!", "Ich weiß es nicht.", "Natürlich.", "Gerne doch.", "Verstanden"],
 "es": ["¡Claro que sí!", "Muchas gracias.", "No lo sé.", "Por supuesto.", "Entendido.", "Me parece bien"],
 "ru": ["Хорошо.", "Спасибо большое!", "Я не знаю.", "Конечно.", "Понятно.", "Без проблем"],
 "ar": ["حسنًا.", "شكرًا جزيلًا!", "لا أعرف.", "بالتأكيد.", "فهمت.", "لا مشكلة"],
 "pt": ["Tudo bem.", "Muito obrigado!", "Não sei.", "Com certeza.", "Entendi.", "Sem problemas"],
 "it": ["Va bene.", "Grazie mille!", "Non lo so.", "Certamente.", "Ho capito.", "Nessun problema"],
 "vi": ["Được rồi.", "Cảm ơn bạn nhiều!", "Tôi không biết.", "Tất nhiên rồi.", "Tôi hiểu rồi.", "Không sao đâu"],
}
SENTENCES = {
 "zh": ["这个问题可以用动态规划来解决。", "北京是中国的首都，也是一座历史悠久的城市。", "我建议你先休息一下，然后再继续工作。",
        "这段代码的时间复杂度是O(n)。", "如果你有任何问题，请随时告诉我。", "下面是三个提高学习效率的方法：",
        "机器学习是人工智能的一个分支。", "今天天气很好，适合出去散步。"],
 "ja": ["この問題は動的計画法で解くことができます。", "東京は日本の首都で、とても大きな都市です。", "少し休んでから作業を続けることをおすすめします。",
        "このコードの計算量はO(n)です。", "何か質問があれば、いつでも聞いてください。", "学習効率を上げる三つの方法を紹介します。",
        "機械学習は人工知能の一分野です。", "今日は天気が良いので散歩に行きましょう。"],
 "ko": ["이 문제는 동적 계획법으로 풀 수 있습니다.", "서울은 한국의 수도이며 매우 큰 도시입니다.", "잠시 쉬었다가 다시 작업하는 것을 추천합니다.",
        "이 코드의 시간 복잡도는 O(n)입니다.", "궁금한 점이 있으면 언제든지 물어보세요.", "학습 효율을 높이는 세 가지 방법은 다음과 같습니다.",
        "머신러닝은 인공지능의 한 분야입니다.", "오늘은 날씨가 좋아서 산책하기 좋아요."],
 "en": ["This problem can be solved with dynamic programming.", "Paris is the capital of France and a very old city.", "I suggest you take a short break and then continue.",
        "The time complexity of this code is O(n).", "If you have any questions, feel free to ask me.", "Here are three ways to study more efficiently:",
        "Machine learning is a branch of artificial intelligence.", "The weather is nice today, perfect for a walk."],
 "fr": ["Ce problème peut être résolu par programmation dynamique.", "Paris est la capitale de la France et une ville très ancienne.", "Je vous conseille de faire une courte pause avant de continuer.",
        "La complexité de ce code est O(n).", "Si vous avez des questions, n'hésitez pas à me les poser.", "Voici trois façons d'étudier plus efficacement :",
        "L'apprentissage automatique est une branche de l'intelligence artificielle.", "Il fait beau aujourd'hui, parfait pour une promenade."],
 "de": ["Dieses Problem lässt sich mit dynamischer Programmierung lösen.", "Berlin ist die Hauptstadt Deutschlands und eine große Stadt.", "Ich empfehle dir, kurz Pause zu machen und dann weiterzuarbeiten.",
        "Die Laufzeit dieses Codes ist O(n).", "Wenn du Fragen hast, frag mich jederzeit.", "Hier sind drei Wege, effizienter zu lernen:",
        "Maschinelles Lernen ist ein Teilgebiet der künstlichen Intelligenz.", "Heute ist schönes Wetter, ideal für einen Spaziergang."],
 "es": ["Este problema se puede resolver con programación dinámica.", "Madrid es la capital de España y una ciudad muy grande.", "Te recomiendo descansar un poco y luego continuar.",
        "La complejidad de este código es O(n).", "Si tienes alguna pregunta, no dudes en preguntarme.", "Aquí tienes tres formas de estudiar de manera más eficiente:",
        "El aprendizaje automático es una rama de la inteligencia artificial.", "Hoy hace buen tiempo, perfecto para dar un paseo."],
 "ru": ["Эту задачу можно решить с помощью динамического программирования.", "Москва — столица России и очень большой город.", "Советую немного отдохнуть, а потом продолжить работу.",
        "Сложность этого кода — O(n).", "Если у вас есть вопросы, смело задавайте их.", "Вот три способа учиться эффективнее:",
        "Машинное обучение — это раздел искусственного интеллекта.", "Сегодня хорошая погода, отлично подходит для прогулки."],
 "ar": ["يمكن حل هذه المشكلة باستخدام البرمجة الديناميكية.", "القاهرة هي عاصمة مصر ومدينة كبيرة جدًا.", "أنصحك بأخذ استراحة قصيرة ثم المتابعة.",
        "تعقيد هذا الكود هو O(n).", "إذا كان لديك أي سؤال، فلا تتردد في طرحه.", "إليك ثلاث طرق للدراسة بكفاءة أكبر:",
        "التعلم الآلي هو فرع من فروع الذكاء الاصطناعي.", "الطقس جميل اليوم، وهو مثالي للتنزه."],
 "pt": ["Este problema pode ser resolvido com programação dinâmica.", "Lisboa é a capital de Portugal e uma cidade muito antiga.", "Recomendo que você descanse um pouco e depois continue.",
        "A complexidade deste código é O(n).", "Se tiver alguma dúvida, pode me perguntar.", "Aqui estão três maneiras de estudar com mais eficiência:",
        "O aprendizado de máquina é um ramo da inteligência artificial.", "O tempo está bom hoje, perfeito para uma caminhada."],
 "it": ["Questo problema si può risolvere con la programmazione dinamica.", "Roma è la capitale d'Italia ed è una città molto antica.", "Ti consiglio di fare una breve pausa e poi continuare.",
        "La complessità di questo codice è O(n).", "Se hai domande, chiedimi pure.", "Ecco tre modi per studiare in modo più efficiente:",
        "L'apprendimento automatico è un ramo dell'intelligenza artificiale.", "Oggi il tempo è bello, perfetto per una passeggiata."],
 "vi": ["Bài toán này có thể giải bằng quy hoạch động.", "Hà Nội là thủ đô của Việt Nam và là một thành phố lâu đời.", "Tôi khuyên bạn nên nghỉ ngơi một chút rồi tiếp tục.",
        "Độ phức tạp của đoạn mã này là O(n).", "Nếu bạn có câu hỏi nào, hãy hỏi tôi.", "Dưới đây là ba cách học hiệu quả hơn:",
        "Học máy là một nhánh của trí tuệ nhân tạo.", "Hôm nay trời đẹp, rất thích hợp để đi dạo."],
}
# Replies with embedded English (terms, code, names): what a chat-vector merge often writes
MIXED = {
 "zh": ["你可以用 pip install numpy 来安装这个库。", "在 Python 中，list 和 tuple 的区别是可变性。", "我推荐使用 PyTorch 而不是 TensorFlow。",
        "请运行 git status 查看当前状态。", "这个 API 返回一个 JSON 对象。", "OK，我明白你的意思了。",
        "Transformer 模型的核心是 self-attention 机制。", "你可以在 GitHub 上找到源代码。"],
 "ja": ["pip install numpy でこのライブラリをインストールできます。", "Python では list と tuple の違いは可変性です。", "TensorFlow より PyTorch をおすすめします。",
        "git status を実行して状態を確認してください。", "この API は JSON オブジェクトを返します。", "OK、意味がわかりました。",
        "Transformer モデルの中心は self-attention です。", "ソースコードは GitHub にあります。"],
 "ko": ["pip install numpy 로 이 라이브러리를 설치할 수 있습니다.", "Python에서 list와 tuple의 차이는 가변성입니다.", "TensorFlow보다 PyTorch를 추천합니다.",
        "git status 를 실행해서 상태를 확인하세요.", "이 API는 JSON 객체를 반환합니다.", "OK, 무슨 뜻인지 알겠어요.",
        "Transformer 모델의 핵심은 self-attention 메커니즘입니다.", "소스 코드는 GitHub에서 찾을 수 있습니다."],
 "de": ["Du kannst die Bibliothek mit pip install numpy installieren.", "In Python unterscheiden sich list und tuple in der Veränderbarkeit.", "Ich empfehle PyTorch statt TensorFlow.",
        "Führe git status aus, um den Zustand zu sehen.", "Diese API gibt ein JSON-Objekt zurück.", "OK, ich verstehe, was du meinst.",
        "Der Kern des Transformer-Modells ist Self-Attention.", "Den Quellcode findest du auf GitHub."],
 "fr": ["Vous pouvez installer la bibliothèque avec pip install numpy.", "En Python, list et tuple diffèrent par leur mutabilité.", "Je recommande PyTorch plutôt que TensorFlow.",
        "Lancez git status pour voir l'état actuel.", "Cette API renvoie un objet JSON.", "OK, je comprends ce que vous voulez dire.",
        "Le cœur du modèle Transformer est le mécanisme de self-attention.", "Vous trouverez le code source sur GitHub."],
 "en": ["You can install it with pip install numpy.", "In Python, a list is mutable and a tuple is not.", "I recommend PyTorch over TensorFlow.",
        "Run git status to see the current state.", "This API returns a JSON object.", "OK, I see what you mean.",
        "The core of the Transformer is self-attention.", "You can find the source code on GitHub."],
}
# Lines of formatted replies (list items, headings, kanji-heavy Japanese, short Russian)
LINES = {
 "zh": ["1. **安装依赖**：运行以下命令。", "## 总结", "- 优点：速度快，内存占用少", "注意：不要在生产环境中使用。", "第二步，配置环境变量。", "**答案**：42", "以上就是全部内容。", "希望对你有帮助！"],
 "ja": ["1. **依存関係のインストール**：以下を実行します。", "## まとめ", "- 長所：高速で省メモリ", "注意：本番環境では使用しないでください。", "第二段階、環境変数の設定。", "**答え**：42", "以上が全内容です。", "お役に立てれば幸いです！"],
 "ko": ["1. **의존성 설치**: 다음 명령을 실행하세요.", "## 요약", "- 장점: 빠르고 메모리를 적게 사용", "주의: 운영 환경에서는 사용하지 마세요.", "두 번째 단계, 환경 변수 설정.", "**답**: 42", "이상이 전체 내용입니다.", "도움이 되었으면 좋겠어요!"],
 "ru": ["1. **Установка зависимостей**: выполните команду.", "## Итог", "- Плюсы: быстро и мало памяти", "Внимание: не используйте в продакшене.", "Второй шаг — настройка переменных окружения.", "**Ответ**: 42", "Вот и всё.", "Надеюсь, это поможет!"],
 "en": ["1. **Install the dependencies**: run the command below.", "## Summary", "- Pros: fast and light on memory", "Note: do not use this in production.", "Second, set the environment variables.", "**Answer**: 42", "That's all.", "Hope this helps!"],
}

# English replies of an assistant (greetings, refusals, openings): what fidelity must not count as the target
DRIFT = {
 "en": ["Hello, I am an assistant.", "I am an assistant.", "Hi! How can I help you today?", "Sure, here is the answer.",
        "I'm sorry, but I can't help with that.", "Great question!", "Here is a summary of the text.", "Let me think about it.",
        "As an AI language model, I don't have personal opinions.", "Yes, that is correct.", "No, that is not right.",
        "Thanks for asking!", "Here are some ideas:", "I hope this helps.", "Certainly! Here you go.", "The answer is 42.",
        "Please provide more details.", "I understand your concern.", "That depends on the context.", "Good morning!",
        "You're welcome.", "Absolutely.", "In conclusion, both options work.", "Let's start with the basics."],
}
